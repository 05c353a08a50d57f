//! What a backup records (`kafka.json`, beside the segments): per partition the cut and
//! the segments holding its batches below it, each topic's own configs, and the consumer
//! groups' committed offsets at the cut.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MANIFEST_KEY: &str = "kafka.json";
/// A backup whose segments are all its own.
pub const FORMAT: u32 = 1;
/// An incremental one: some partitions continue their base's (`Partition::chained`).
pub const FORMAT_CHAIN: u32 = 2;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub format: u32,
    pub bootstrap: String,
    pub cluster_id: Option<String>,
    pub topics: Vec<Topic>,
    pub groups: Vec<Group>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    pub name: String,
    /// The topic's id on its cluster: a topic deleted and made again under the same name
    /// gets a new one, so an incremental never chains onto the old topic's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// The topic's own settings (set on the topic, not inherited from the broker).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Partition>,
    /// The oldest record timestamp backed up (ms since the epoch), if any record was.
    pub oldest_ms: Option<i64>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    pub partition: i32,
    /// Where this backup's records of the partition begin: the log start when it began,
    /// or (chained) its base's cut.
    pub start: i64,
    /// The cut: the last stable offset when the backup began. Everything below it is
    /// backed up; nothing at or above it.
    pub cut: i64,
    /// This backup's own records and batch bytes.
    pub records: u64,
    pub bytes: u64,
    /// This backup's own segments, in offset order.
    pub segments: Vec<Segment>,
    /// The partition's records below `start` are its base's (the `kafka.json` bound as
    /// `base-1`, whose own chained partitions continue in `base-2`, …).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chained: bool,
    /// Records of the partition in this backup and the bases it chains to.
    #[serde(default)]
    pub chain_records: u64,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    pub key: String,
    pub first_offset: i64,
    pub last_offset: i64,
    pub batches: u32,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub group: String,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    /// The committed offset: the next record the group's consumers read.
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// The backup record in `store`, of a format this plugin reads; `whose` names it in errors
/// (`the backup`, `base-1's backup`).
pub fn read(
    store: &coffer_plugin_sdk::location::Store,
    whose: &str,
) -> Result<Backup, coffer_plugin_sdk::Error> {
    use coffer_plugin_sdk::{Error, invalid};
    let raw = store.get_bytes(MANIFEST_KEY, 64 << 20)?;
    let b: Backup = serde_json::from_slice(&raw)
        .map_err(|e| Error::Io(format!("{whose} ({MANIFEST_KEY}): {e}")))?;
    if !(FORMAT..=FORMAT_CHAIN).contains(&b.format) {
        return Err(invalid(format!(
            "{whose} is in format {}; this plugin reads formats {FORMAT} to {FORMAT_CHAIN}",
            b.format
        )));
    }
    Ok(b)
}

/// A topic name Kafka accepts (and so safe in an object key): 1 to 249 of
/// `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
