//! restore: every check first (the backup readable, each target topic absent or empty, or
//! `purge`), so a refused restore changes nothing; then topics created with their recorded
//! partitions and configs, the batches produced in order per partition, and each group's
//! offsets committed through the old→new offset map.

use crate::chain::{Links, Pieces};
use crate::client::{Cluster, check, str, topic};
use crate::model::{self, Backup, Topic, valid_topic};
use crate::{LOCATION, RestoreParams, Retention, batch};
use coffer_plugin_sdk::io::ObjectReader;
use coffer_plugin_sdk::{self as sdk, ActionOutput, Error, location, log};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, ListOffsetsRequest,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
};
use std::collections::BTreeMap;

/// A topic to purge first: its name and (partition, leader, end offset) of each non-empty
/// partition.
type ToPurge = (String, Vec<(i32, i32, i64)>);

/// Kafka's default `retention.ms` (7 days), for a topic that does not set its own.
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Where one backed-up batch landed: its old offsets and the new base.
struct Placed {
    old_first: i64,
    old_last: i64,
    /// The old offset of each record, when compaction left gaps.
    old_offsets: Option<Vec<i64>>,
    new_base: i64,
    count: i64,
}

/// The old→new offsets of one partition.
#[derive(Default)]
struct OffsetMap {
    placed: Vec<Placed>,
    new_end: i64,
}

impl OffsetMap {
    /// Where a consumer that would next have read old offset `old` resumes.
    fn map(&self, old: i64) -> i64 {
        for p in &self.placed {
            if p.old_last < old {
                continue;
            }
            if p.old_first >= old {
                return p.new_base;
            }
            return match &p.old_offsets {
                None => p.new_base + (old - p.old_first),
                Some(offs) => p.new_base + offs.iter().take_while(|&&o| o < old).count() as i64,
            };
        }
        self.new_end
    }
}

pub fn run(p: RestoreParams) -> Result<ActionOutput, Error> {
    let store = location::open(LOCATION)?;
    let backup: Backup = model::read(&store, "the backup")?;
    // Each backed-up topic's name on the target.
    let targets: BTreeMap<String, String> = backup
        .topics
        .iter()
        .map(|t| {
            let to = p.topic_map.get(&t.name).unwrap_or(&t.name);
            (t.name.clone(), to.clone())
        })
        .collect();
    let target = |t: &Topic| targets[&t.name].clone();
    for (from, to) in &p.topic_map {
        if !backup.topics.iter().any(|t| &t.name == from) {
            return Err(sdk::invalid(format!(
                "params.topicMap: topic {from:?} is not in this backup"
            )));
        }
        if !valid_topic(to) {
            return Err(sdk::invalid(format!(
                "params.topicMap: {to:?} is not a Kafka topic name"
            )));
        }
    }
    // Every partition's segments, through the bases of an incremental: a damaged chain
    // stops the restore before the cluster is touched.
    let mut links = Links::new(store);
    let mut pieces: BTreeMap<(String, i32), Pieces> = BTreeMap::new();
    for t in &backup.topics {
        for part in &t.partitions {
            pieces.insert(
                (t.name.clone(), part.partition),
                links.pieces(&t.name, part)?,
            );
        }
    }
    let mut c = Cluster::connect(&p.bootstrap)?;

    // Checks: nothing is written until every topic is known to be fit.
    let names: Vec<String> = backup.topics.iter().map(target).collect();
    let meta = c.metadata(Some(&names))?;
    let mut existing: BTreeMap<String, Vec<(i32, i32)>> = BTreeMap::new();
    for t in &meta.topics {
        let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
            continue;
        };
        if t.error_code == 3 {
            continue; // UNKNOWN_TOPIC_OR_PARTITION: to be created
        }
        check(t.error_code, &format!("metadata of topic {name}"))?;
        existing.insert(
            name,
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect(),
        );
    }
    let mut purge: Vec<ToPurge> = Vec::new();
    for t in &backup.topics {
        let name = target(t);
        let Some(parts) = existing.get(&name) else {
            continue;
        };
        if parts.len() < t.partitions.len() {
            return Err(Error::Conflict(format!(
                "topic {name} exists with {} partitions; the backup of {} has {}: restore into a new topic (params.topicMap) or add partitions first",
                parts.len(),
                t.name,
                t.partitions.len()
            )));
        }
        let (starts, ends) = (
            offsets(&mut c, &name, parts, -2)?,
            offsets(&mut c, &name, parts, -1)?,
        );
        let full: Vec<(i32, i32, i64)> = parts
            .iter()
            .filter(|(part, _)| ends[part] > starts[part])
            .map(|&(part, leader)| (part, leader, ends[&part]))
            .collect();
        if !full.is_empty() && !p.purge {
            let (part, _, end) = full[0];
            return Err(Error::Conflict(format!(
                "topic {name} is not empty (partition {part} holds offsets {}..{end}): restore into an empty or new topic (params.topicMap: {{{}: NEW}}), or set params.purge: true to delete its records first",
                starts[&part], t.name
            )));
        }
        if !full.is_empty() {
            purge.push((name.clone(), full));
        }
    }

    // A group's offsets cannot be moved under live consumers (and they would read the
    // records as they arrive): refuse before anything is written.
    if p.groups && !backup.groups.is_empty() {
        let ids: Vec<&str> = backup.groups.iter().map(|g| g.group.as_str()).collect();
        let busy = crate::groups::busy(&mut c, &ids)?;
        if !busy.is_empty() {
            return Err(Error::Conflict(format!(
                "consumer group {} has active members on the target cluster: stop its consumers, or restore without the groups' offsets (params.groups: false); nothing was changed",
                busy.join("; ")
            )));
        }
    }

    // Records older than retention.ms would be deleted by the broker soon after.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut extended = Vec::new();
    for t in &backup.topics {
        let retention = t
            .configs
            .get("retention.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(DEFAULT_RETENTION_MS);
        if let Some(oldest) = t.oldest_ms
            && retention >= 0
            && oldest < now - retention
        {
            match p.retention {
                Retention::Extend => extended.push(t.name.clone()),
                Retention::Keep => log::warn(
                    "records older than the topic's retention.ms: the broker will delete them soon after the restore (params.retention: extend keeps them)",
                    &[
                        ("topic", &target(t)),
                        ("retention.ms", &retention.to_string()),
                    ],
                ),
            }
        }
    }

    for (name, parts) in &purge {
        delete_records(&mut c, name, parts)?;
        log::warn("purged the topic's records", &[("topic", name)]);
    }
    let create: Vec<&Topic> = backup
        .topics
        .iter()
        .filter(|t| !existing.contains_key(&target(t)))
        .collect();
    let created: Vec<String> = create.iter().map(|t| target(t)).collect();
    let filled = (|| {
        if !create.is_empty() {
            create_topics(&mut c, &create, &targets, &extended)?;
        }
        fill(&mut c, &mut links, &pieces, &backup, &targets, p.groups)
    })();
    let (produced, renumbered, groups) = match filled {
        Ok(f) => f,
        Err(e) => {
            let existed: Vec<String> = names
                .iter()
                .filter(|n| !created.contains(n))
                .cloned()
                .collect();
            return Err(undo(&mut c, e, &created, &existed));
        }
    };
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![
            ("topics".into(), backup.topics.len().to_string()),
            ("records".into(), produced.to_string()),
            ("renumberedBatches".into(), renumbered.to_string()),
            ("groups".into(), groups.to_string()),
        ],
    })
}

/// Produce every partition's batches and commit the groups' offsets: (records, renumbered
/// batches, groups).
fn fill(
    c: &mut Cluster,
    links: &mut Links,
    pieces: &BTreeMap<(String, i32), Pieces>,
    backup: &Backup,
    targets: &BTreeMap<String, String>,
    with_groups: bool,
) -> Result<(u64, usize, usize), Error> {
    let mut maps: BTreeMap<(String, i32), OffsetMap> = BTreeMap::new();
    let total: u64 = pieces.values().map(|p| p.records).sum();
    let mut done = 0;
    let mut produced = 0u64;
    // Batches compaction left with gaps, sent renumbered (and uncompressed).
    let mut renumbered = 0;
    for t in &backup.topics {
        let name = &targets[&t.name];
        for part in &t.partitions {
            let key = (t.name.clone(), part.partition);
            let at = Target {
                name,
                partition: part.partition,
            };
            let map = produce_partition(c, links, &pieces[&key], at, (&mut done, total))?;
            produced += map.placed.iter().map(|p| p.count as u64).sum::<u64>();
            renumbered += map
                .placed
                .iter()
                .filter(|p| p.old_offsets.is_some())
                .count();
            maps.insert((t.name.clone(), part.partition), map);
        }
    }
    let mut groups = 0;
    if with_groups {
        for g in &backup.groups {
            crate::groups::commit(c, g, |o| {
                let map = maps.get(&(o.topic.clone(), o.partition))?;
                Some((targets.get(&o.topic)?.clone(), map.map(o.offset)))
            })?;
            groups += 1;
        }
    }
    Ok((produced, renumbered, groups))
}

/// A restore failed after it began writing: delete the topics it created (they did not
/// exist before it), and say which topics that existed now hold part of the backup.
fn undo(c: &mut Cluster, failed: Error, created: &[String], existed: &[String]) -> Error {
    let why = sdk::error_text(&failed);
    let mut said = vec![why];
    if !created.is_empty() {
        match delete_topics(c, created) {
            Ok(()) => said.push(format!(
                "the topics this restore created were deleted again ({})",
                created.join(", ")
            )),
            Err(e) => said.push(format!(
                "the topics this restore created ({}) could not be deleted ({}): they hold part of the backup; delete them, or restore again with params.purge: true",
                created.join(", "),
                sdk::error_text(&e)
            )),
        }
    }
    if !existed.is_empty() {
        said.push(format!(
            "{} existed before and may now hold part of the backup: restore again with params.purge: true",
            existed.join(", ")
        ));
    }
    let text = said.join(". ");
    match failed {
        Error::Cancelled => {
            log::warn("restore cancelled part way", &[("state", &text)]);
            Error::Cancelled
        }
        Error::Denied(_) => Error::Denied(text),
        Error::Timeout(_) => Error::Timeout(text),
        Error::NotFound(_) => Error::NotFound(text),
        Error::Internal(_) => Error::Internal(text),
        Error::InvalidArgument(_) => Error::InvalidArgument(text),
        Error::Conflict(_) => Error::Conflict(text),
        _ => Error::Io(text),
    }
}

fn delete_topics(c: &mut Cluster, names: &[String]) -> Result<(), Error> {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(names.iter().map(|n| topic(n)).collect());
    let resp = c.any().call(&req, 4)?;
    for t in resp.responses {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        // UNKNOWN_TOPIC_OR_PARTITION: never created.
        if t.error_code != 3 {
            check(t.error_code, &format!("delete topic {name}"))?;
        }
    }
    Ok(())
}

fn offsets(
    c: &mut Cluster,
    name: &str,
    parts: &[(i32, i32)],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, Error> {
    let mut out = BTreeMap::new();
    for &(part, leader) in parts {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic(name))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(part)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let resp = c.broker(BrokerId(leader))?.call(&req, 7)?;
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, &format!("list offsets of {name}/{part}"))?;
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    Ok(out)
}

fn delete_records(c: &mut Cluster, name: &str, parts: &[(i32, i32, i64)]) -> Result<(), Error> {
    for &(part, leader, end) in parts {
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(topic(name))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(part)
                            .with_offset(end),
                    ]),
            ]);
        let resp = c.broker(BrokerId(leader))?.call(&req, 2)?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 44 {
                    return Err(Error::Conflict(format!(
                        "topic {name} cannot be purged: Kafka deletes no records of a compacted topic (cleanup.policy=compact); restore it under a new name (params.topicMap)"
                    )));
                }
                check(p.error_code, &format!("purge {name}/{part}"))?;
            }
        }
    }
    Ok(())
}

fn create_topics(
    c: &mut Cluster,
    topics: &[&Topic],
    targets: &BTreeMap<String, String>,
    extended: &[String],
) -> Result<(), Error> {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    let mut configs = t.configs.clone();
                    if extended.contains(&t.name) {
                        configs.insert("retention.ms".into(), "-1".into());
                    }
                    CreatableTopic::default()
                        .with_name(topic(&targets[&t.name]))
                        .with_num_partitions(t.partitions.len() as i32)
                        .with_replication_factor(-1)
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(str(k))
                                        .with_value(Some(str(v)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp = c.any().call(&req, 7)?;
    for t in resp.topics {
        let what = match &t.error_message {
            Some(m) => format!("create topic {}: {}", t.name.as_str(), m.as_str()),
            None => format!("create topic {}", t.name.as_str()),
        };
        check(t.error_code, &what)?;
        log::info("created topic", &[("topic", t.name.as_str())]);
    }
    Ok(())
}

/// A partition on the target cluster.
struct Target<'a> {
    name: &'a str,
    partition: i32,
}

/// Produce one partition's batches in order; their new offsets.
fn produce_partition(
    c: &mut Cluster,
    links: &mut Links,
    pieces: &Pieces,
    at: Target<'_>,
    (done, total): (&mut u64, u64),
) -> Result<OffsetMap, Error> {
    let (name, partition) = (at.name, at.partition);
    let mut producer = crate::produce::Producer::new(c, name, partition);
    let mut buf = Vec::new();
    for (location, seg) in &pieces.segments {
        // Read batch by batch: a segment is about SEGMENT_BYTES, but one batch may be as
        // large as the topic allowed.
        let mut r = ObjectReader::open(links.store(location)?, &seg.key)?;
        let mut batches = 0u32;
        while batch::read_next(&mut r, &mut buf, &seg.key)? {
            let b = batch::Batch(&buf);
            batches += 1;
            let (bytes, old_offsets) = batch::for_producer(b)?;
            let count = b.count() as i64;
            producer.push(
                bytes,
                crate::produce::Batch {
                    old_first: b.base_offset(),
                    old_last: b.last_offset(),
                    old_offsets,
                    count,
                },
            )?;
            *done += count as u64;
        }
        r.finish()?;
        if batches != seg.batches {
            return Err(Error::Io(format!(
                "{} holds {batches} record batches; the backup recorded {}",
                seg.key, seg.batches
            )));
        }
        log::progress(&format!("{name}/{partition}"), *done, Some(total));
    }
    let mut map = OffsetMap::default();
    for (b, new_base) in producer.finish()? {
        map.new_end = new_base + b.count;
        map.placed.push(Placed {
            old_first: b.old_first,
            old_last: b.old_last,
            old_offsets: b.old_offsets,
            new_base,
            count: b.count,
        });
    }
    Ok(map)
}
