use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The artifacts of one completed backup: what restore and delete consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestorePointSpec {
    pub workload: String,
    pub blueprint: String,
    pub profile: String,
    pub plugin: PluginInfo,
    /// The prefix in the location under which all its objects live.
    pub prefix: String,
    /// The manifest object (written last; its presence is what makes the backup complete).
    pub manifest_key: String,
    pub action_set: String,
    pub start_time: String,
    pub end_time: String,
    /// Bytes before compression / as stored.
    pub size: u64,
    pub stored_size: u64,
    pub artifacts: Vec<ArtifactRecord>,
    pub objects: Vec<ObjectRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// A named artifact as the plugin reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactRecord {
    pub name: String,
    pub location: String,
    /// Key relative to the restore point's prefix.
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// One stored object as the host wrote it (authoritative sizes and checksums).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRecord {
    /// Key relative to the restore point's prefix, as the plugin named it.
    pub key: String,
    /// Key relative to the prefix as stored (`.zst` when compressed, then `.age` when
    /// encrypted).
    pub stored_key: String,
    pub size: u64,
    pub stored_size: u64,
    /// sha256 (hex) of the stored bytes.
    pub sha256: String,
    pub compression: String,
    /// `age` when encrypted (after compression); absent for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}
