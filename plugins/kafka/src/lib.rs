//! kafka: Apache Kafka topics backed up over the Kafka protocol itself (the `net`
//! capability), no Kafka Connect and no client library on the host.
//!
//! backup  = the cut (per partition the log start and last stable offset), the consumer
//!           groups' committed offsets at it, the topics' own configs; then each
//!           partition's record batches below the cut, byte for byte (keys, values, headers
//!           in order, timestamps, compression, tombstones), in segments written as object
//!           streams. Aborted transactions and transaction markers are left out.
//! restore = every check first (target topics absent, or empty, or `purge`), then topics
//!           created with the recorded partitions and configs, the batches produced in
//!           order (their headers rewritten for a plain producer, records untouched), and
//!           each group's offsets committed where its consumers resume at the record after
//!           their last committed one.
//! delete  = remove the objects.

mod backup;
mod batch;
mod chain;
mod client;
mod groups;
mod model;
mod produce;
mod restore;

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{self as sdk, Action, ActionOutput, ActionRequest, Error};
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

pub(crate) const LOCATION: &str = "default";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// A broker of the cluster, `host:port` (the Blueprint must grant it, and every broker
    /// the cluster advertises, in spec.grants.net).
    pub bootstrap: String,
    /// The topics to back up, by name.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Or a regular expression the whole topic name matches (internal topics never do).
    pub topic_pattern: Option<String>,
    /// Back up the consumer groups' committed offsets on these topics.
    #[serde(default = "yes")]
    pub groups: bool,
}

/// What to do with records older than the topic's `retention.ms`, which the broker would
/// delete soon after they are restored.
#[derive(Debug, Default, Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase")]
pub enum Retention {
    /// Restore the topic's configs as they were, and warn.
    #[default]
    Keep,
    /// Create the topic with `retention.ms: -1`, so nothing restored is deleted.
    Extend,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// A broker of the cluster to restore into, `host:port` (granted in spec.grants.net).
    pub bootstrap: String,
    /// Delete the records of a target topic that is not empty first (DeleteRecords).
    /// Without it such a topic is refused and nothing is changed.
    #[serde(default)]
    pub purge: bool,
    /// Restore topics under other names: `{old: new}`.
    #[serde(default)]
    pub topic_map: BTreeMap<String, String>,
    /// Commit the consumer groups' offsets (mapped to the restored records). Each group
    /// must have no active members.
    #[serde(default = "yes")]
    pub groups: bool,
    /// Records older than the topic's retention: `keep` (warn) or `extend`.
    #[serde(default)]
    pub retention: Retention,
}

fn yes() -> bool {
    true
}

fn bootstrap_problem(b: &str) -> Option<String> {
    let ok = b.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !h.starts_with('-') && p.parse::<u16>().is_ok_and(|p| p > 0)
    });
    (!ok).then(|| format!("params.bootstrap: {b:?} is not host:port"))
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = bootstrap_problem(&p.bootstrap).into_iter().collect();
        if p.topics.is_empty() && p.topic_pattern.is_none() {
            problems.push("name the topics (params.topics) or a params.topicPattern".into());
        }
        for t in &p.topics {
            if !model::valid_topic(t) {
                problems.push(format!("params.topics: {t:?} is not a Kafka topic name"));
            }
        }
        if let Some(re) = &p.topic_pattern
            && let Err(e) = regex_lite::Regex::new(re)
        {
            problems.push(format!("params.topicPattern: {e}"));
        }
        sdk::checked(problems)
    }

    fn run(p: BackupParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        backup::run(p, req)
    }
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = bootstrap_problem(&p.bootstrap).into_iter().collect();
        if !req
            .input_artifacts
            .iter()
            .any(|a| a.key == model::MANIFEST_KEY)
        {
            problems.push(format!(
                "the restore point has no {} artifact: it is not a Kafka backup",
                model::MANIFEST_KEY
            ));
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        restore::run(p)
    }
}
