use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A local target (local mode): its environment, secrets, and the Blueprint protecting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    pub blueprint: String,
    /// Environment of every process the plugin runs for this workload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The OS user its processes run as (e.g. `postgres`, who owns the data directory);
    /// default: coffer's own. Only a coffer running as root can use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// Secrets by logical name (e.g. `password`), never inline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// The Profile backups go to; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Params by action name; override the Blueprint's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Directories of the workload by name (e.g. `data: /var/lib/redis`): the only places a
    /// plugin can have the host put a file (`exec.install-file`), absolute paths.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, std::path::PathBuf>,
}

/// Where a secret's value is read from, when an action needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// A file holding the value (one trailing newline is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<std::path::PathBuf>,
    /// An environment variable of the coffer process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// On Kubernetes: a key of a Secret in the daemon's namespace (Profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretKeyRef>,
}

impl SecretRef {
    /// Exactly one source is given.
    pub fn is_well_formed(&self) -> bool {
        [
            self.file.is_some(),
            self.env.is_some(),
            self.secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
            == 1
    }
}

/// A key of a Kubernetes Secret.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}
