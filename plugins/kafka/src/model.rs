//! What a backup records (`kafka.json`, beside the segments): per partition the cut and
//! the segments holding its batches below it, each topic's own configs, and the consumer
//! groups' committed offsets at the cut.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MANIFEST_KEY: &str = "kafka.json";
/// A backup whose segments are all its own.
pub const FORMAT: u32 = 1;
/// An incremental one: some segments are in its bases (`Segment::location`).
pub const FORMAT_CHAIN: u32 = 2;
/// The location a backup's own objects are in.
pub const OWN: &str = "default";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub format: u32,
    pub bootstrap: String,
    pub cluster_id: Option<String>,
    pub topics: Vec<Topic>,
    pub groups: Vec<Group>,
}

#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    pub partition: i32,
    /// The log start offset when the backup (for an incremental: its chain's full
    /// backup) began.
    pub start: i64,
    /// The cut: the last stable offset when the backup began. Everything below it is
    /// backed up; nothing at or above it.
    pub cut: i64,
    /// Records and bytes of batches below the cut, in this backup and its bases.
    pub records: u64,
    pub bytes: u64,
    /// In offset order: a base's segments first.
    pub segments: Vec<Segment>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// The logical location it is in: `default` (this backup's), `base-1` (its base's), …
    #[serde(default = "own", skip_serializing_if = "is_own")]
    pub location: String,
    pub key: String,
    pub first_offset: i64,
    pub last_offset: i64,
    pub batches: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub group: String,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    /// The committed offset: the next record the group's consumers read.
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

fn own() -> String {
    OWN.to_string()
}

fn is_own(l: &str) -> bool {
    l == OWN
}

impl Segment {
    /// The same segment as the backup built on this one names it: one base further away.
    pub fn one_base_further(&self) -> Result<Segment, String> {
        let depth = match self.location.as_str() {
            OWN => 0,
            l => l
                .strip_prefix("base-")
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| format!("segment {} is in an unknown location {l:?}", self.key))?,
        };
        Ok(Segment {
            location: format!("base-{}", depth + 1),
            key: self.key.clone(),
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            batches: self.batches,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(location: &str) -> Segment {
        Segment {
            location: location.into(),
            key: "topics/t/0/00000000000000000000.batches".into(),
            first_offset: 0,
            last_offset: 9,
            batches: 2,
        }
    }

    #[test]
    fn a_segment_is_one_base_further_from_the_backup_built_on_its_own() {
        assert_eq!(seg(OWN).one_base_further().unwrap().location, "base-1");
        assert_eq!(seg("base-1").one_base_further().unwrap().location, "base-2");
        assert_eq!(
            seg("base-41").one_base_further().unwrap().location,
            "base-42"
        );
        assert!(seg("elsewhere").one_base_further().is_err());
        // An own segment's location is left out of kafka.json, and read back as own.
        let text = serde_json::to_string(&seg(OWN)).unwrap();
        assert!(!text.contains("location"), "{text}");
        let back: Segment = serde_json::from_str(&text).unwrap();
        assert_eq!(back.location, OWN);
    }
}
