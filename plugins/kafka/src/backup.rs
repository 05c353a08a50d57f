//! backup: the cut first (per partition the log start and the last stable offset, and the
//! groups' committed offsets right after), then each partition's record batches from its
//! start up to the cut, byte for byte, into segments of about [`SEGMENT_BYTES`] written as
//! object streams; `kafka.json` last.
//!
//! An incremental backup (the host bound a base as `base-1`) copies each partition from
//! its base's cut instead and marks it `chained`: the chain holds every record below the
//! new cut, and each link's `kafka.json` lists only its own segments.

use crate::client::{Cluster, check, str, topic};
use crate::model::{self, Backup, Partition, Segment, Topic};
use crate::{BackupParams, LOCATION, batch};
use coffer_plugin_sdk::io::ObjectStream;
use coffer_plugin_sdk::{self as sdk, ActionOutput, ActionRequest, Artifact, Error, location, log};
use kafka_protocol::messages::{
    BrokerId, DescribeConfigsRequest, FetchRequest, ListOffsetsRequest,
    describe_configs_request::DescribeConfigsResource,
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// A segment is closed once it holds this much (a batch is never split).
const SEGMENT_BYTES: usize = 4 << 20;
/// Bytes one fetch asks for per partition.
const FETCH_BYTES: i32 = 1 << 20;
/// Fetches in a row that return nothing while records below the cut remain.
const EMPTY_FETCHES: u32 = 60;
const READ_COMMITTED: i8 = 1;

/// The location an incremental's base is bound as.
const BASE: &str = "base-1";

struct Target {
    name: String,
    topic_id: Option<String>,
    /// (partition, leader)
    partitions: Vec<(i32, i32)>,
}

/// The base's record, when the host bound one (an incremental backup).
fn base(req: &ActionRequest) -> Result<Option<Backup>, Error> {
    if !req
        .input_artifacts
        .iter()
        .any(|a| a.location == BASE && a.key == model::MANIFEST_KEY)
    {
        return Ok(None);
    }
    let b = model::read(
        &location::open(BASE)?,
        "the base restore point's backup (make a full one, without --incremental, if it cannot be read)",
    )?;
    Ok(Some(b))
}

/// What a partition takes over from the base: its record, if the base's records are the
/// start of this partition's log.
fn inherit<'a>(
    base: Option<&'a Backup>,
    t: &Target,
    part: i32,
    start: i64,
    cut: i64,
) -> Option<&'a Partition> {
    let bt = base?.topics.iter().find(|b| b.name == t.name)?;
    let what = format!("{}/{part}", t.name);
    if let (Some(was), Some(now)) = (&bt.topic_id, &t.topic_id)
        && was != now
    {
        log::warn(
            "the topic was deleted and made again since the base: copied whole",
            &[("partition", &what)],
        );
        return None;
    }
    let bp = bt.partitions.iter().find(|b| b.partition == part)?;
    if bp.cut > cut {
        log::warn(
            "the partition ends before the base's cut (it was truncated or made again): copied whole",
            &[("partition", &what), ("baseCut", &bp.cut.to_string())],
        );
        return None;
    }
    if bp.cut < start {
        log::warn(
            "records between the base's cut and the log start were deleted by the broker before this backup: no backup holds them",
            &[
                ("partition", &what),
                ("missed", &(start - bp.cut).to_string()),
            ],
        );
    }
    Some(bp)
}

pub fn run(p: BackupParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let base = base(req)?;
    let mut c = Cluster::connect(&p.bootstrap)?;
    let meta = c.metadata(None)?;
    let cluster_id = meta.cluster_id.as_ref().map(|s| s.to_string());
    if let Some(b) = &base
        && let (Some(was), Some(now)) = (&b.cluster_id, &cluster_id)
        && was != now
    {
        return Err(Error::Conflict(format!(
            "the base restore point is a backup of cluster {was}, and {} is cluster {now}: make a full backup (without --incremental)",
            p.bootstrap
        )));
    }
    let pattern = match &p.topic_pattern {
        Some(re) => Some(
            regex_lite::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| sdk::invalid(format!("params.topicPattern: {e}")))?,
        ),
        None => None,
    };
    let mut targets = Vec::new();
    let mut seen = BTreeSet::new();
    for t in &meta.topics {
        let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
            continue;
        };
        let named = p.topics.contains(&name);
        let matched = pattern
            .as_ref()
            .is_some_and(|re| !t.is_internal && re.is_match(&name));
        if !named && !matched {
            continue;
        }
        check(t.error_code, &format!("metadata of topic {name}"))?;
        seen.insert(name.clone());
        let mut partitions: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        partitions.sort();
        let topic_id = (!t.topic_id.is_nil()).then(|| t.topic_id.to_string());
        targets.push(Target {
            name,
            topic_id,
            partitions,
        });
    }
    let missing: Vec<&String> = p.topics.iter().filter(|t| !seen.contains(*t)).collect();
    if !missing.is_empty() {
        return Err(Error::NotFound(format!(
            "topics {missing:?} are not on the cluster at {}",
            p.bootstrap
        )));
    }
    if targets.is_empty() {
        return Err(Error::NotFound(format!(
            "no topic on the cluster at {} matches params.topicPattern",
            p.bootstrap
        )));
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));

    // The cut, then the groups' offsets at it.
    let starts = list_offsets(&mut c, &targets, -2)?;
    let cuts = list_offsets(&mut c, &targets, -1)?;
    let names: BTreeSet<String> = targets.iter().map(|t| t.name.clone()).collect();
    let groups = if p.groups {
        crate::groups::offsets(&mut c, &names)?
    } else {
        Vec::new()
    };
    let configs = topic_configs(&mut c, &names)?;
    log::info(
        "cut taken",
        &[
            ("topics", &targets.len().to_string()),
            ("groups", &groups.len().to_string()),
        ],
    );

    let store = location::open(LOCATION)?;
    let mut artifacts = Vec::new();
    let mut topics = Vec::new();
    // Per partition: where the copy starts, and what the base holds below it.
    let mut plan: BTreeMap<(String, i32), (i64, Option<&Partition>)> = BTreeMap::new();
    for t in &targets {
        for &(part, _) in &t.partitions {
            let k = (t.name.clone(), part);
            let (start, cut) = (starts[&k], cuts[&k]);
            let from = inherit(base.as_ref(), t, part, start, cut);
            let first = from.map_or(start, |b| b.cut.max(start));
            plan.insert(k, (first, from));
        }
    }
    let total: u64 = plan
        .iter()
        .map(|(k, (first, _))| (cuts[k] - first).max(0) as u64)
        .sum();
    let (mut done, mut inherited) = (0u64, 0u64);
    for t in &targets {
        let mut parts = Vec::new();
        let mut oldest: Option<i64> = base
            .iter()
            .flat_map(|b| &b.topics)
            .find(|b| b.name == t.name)
            .and_then(|b| b.oldest_ms);
        for &(part, leader) in &t.partitions {
            let k = (t.name.clone(), part);
            let (first, from) = plan[&k];
            let mut copy = PartitionCopy {
                store: &store,
                topic: &t.name,
                partition: part,
                artifacts: &mut artifacts,
                oldest: &mut oldest,
            };
            let mut got = copy.run(&mut c, leader, first, cuts[&k], &mut done, total)?;
            got.chain_records = got.records;
            if let Some(b) = from {
                got.chained = true;
                // A base written before chains were counted holds only its own.
                let below = b.chain_records.max(b.records);
                got.chain_records += below;
                inherited += below;
            }
            parts.push(got);
        }
        topics.push(Topic {
            name: t.name.clone(),
            topic_id: t.topic_id.clone(),
            configs: configs.get(&t.name).cloned().unwrap_or_default(),
            partitions: parts,
            oldest_ms: oldest,
        });
    }
    // Records produced while this ran: how far behind the cut is as it is recorded.
    let ends = list_offsets(&mut c, &targets, -1)?;
    let lag: i64 = ends.iter().map(|(k, end)| (end - cuts[k]).max(0)).sum();
    if let Some(b) = &base
        && same_as_base(b, &topics, &groups)
    {
        log::info(
            "nothing new since the base's cut",
            &[("lagRecords", &lag.to_string())],
        );
        return Ok(ActionOutput {
            artifacts: Vec::new(),
            outputs: vec![
                ("unchanged".into(), "true".into()),
                ("lagRecords".into(), lag.to_string()),
            ],
        });
    }
    let chained = topics.iter().flat_map(|t| &t.partitions).any(|p| p.chained);
    let manifest = Backup {
        format: if chained {
            model::FORMAT_CHAIN
        } else {
            model::FORMAT
        },
        bootstrap: p.bootstrap.clone(),
        cluster_id,
        topics,
        groups,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| sdk::internal(e.to_string()))?;
    let info = store.put_bytes(model::MANIFEST_KEY, &text, &sdk::compressed())?;
    artifacts.push(sdk::artifact("kafka", LOCATION, &info));
    Ok(ActionOutput {
        artifacts,
        outputs: vec![
            ("topics".into(), manifest.topics.len().to_string()),
            ("records".into(), done.to_string()),
            ("inheritedRecords".into(), inherited.to_string()),
            ("groups".into(), manifest.groups.len().to_string()),
            ("lagRecords".into(), lag.to_string()),
        ],
    })
}

/// Whether this backup would hold exactly what its base holds: every partition continues
/// the base's at the same cut with no record of its own, and the topics, their configs and
/// the groups' offsets are the base's.
fn same_as_base(base: &Backup, topics: &[Topic], groups: &[model::Group]) -> bool {
    base.topics.len() == topics.len()
        && base.groups == groups
        && topics.iter().all(|t| {
            base.topics.iter().any(|b| {
                b.name == t.name
                    && b.configs == t.configs
                    && b.partitions.len() == t.partitions.len()
                    && t.partitions.iter().all(|p| {
                        p.chained
                            && p.records == 0
                            && b.partitions
                                .iter()
                                .any(|bp| bp.partition == p.partition && bp.cut == p.cut)
                    })
            })
        })
}

/// Per partition the offset ListOffsets gives for `timestamp` (-2 earliest, -1 latest),
/// read committed: the latest is the last stable offset.
fn list_offsets(
    c: &mut Cluster,
    targets: &[Target],
    timestamp: i64,
) -> Result<BTreeMap<(String, i32), i64>, Error> {
    let mut by_leader: BTreeMap<i32, Vec<ListOffsetsTopic>> = BTreeMap::new();
    for t in targets {
        let mut per: BTreeMap<i32, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for &(part, leader) in &t.partitions {
            per.entry(leader).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(part)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp),
            );
        }
        for (leader, parts) in per {
            by_leader.entry(leader).or_default().push(
                ListOffsetsTopic::default()
                    .with_name(topic(&t.name))
                    .with_partitions(parts),
            );
        }
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(READ_COMMITTED)
            .with_topics(topics);
        let resp = c.broker(BrokerId(leader))?.call(&req, 7)?;
        for t in resp.topics {
            for p in t.partitions {
                check(
                    p.error_code,
                    &format!("list offsets of {}/{}", t.name.as_str(), p.partition_index),
                )?;
                out.insert((t.name.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// The topics' own configs (set on the topic, not defaults; sensitive ones left out).
fn topic_configs(
    c: &mut Cluster,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
    const TOPIC: i8 = 2;
    const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    let req = DescribeConfigsRequest::default().with_resources(
        names
            .iter()
            .map(|n| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC)
                    .with_resource_name(str(n))
            })
            .collect(),
    );
    let resp = c.any().call(&req, 4)?;
    let mut out = BTreeMap::new();
    for r in resp.results {
        check(
            r.error_code,
            &format!("describe configs of {}", r.resource_name.as_str()),
        )?;
        let own: BTreeMap<String, String> = r
            .configs
            .into_iter()
            .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG && !c.is_sensitive)
            .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
            .collect();
        out.insert(r.resource_name.to_string(), own);
    }
    Ok(out)
}

struct PartitionCopy<'a> {
    store: &'a location::Store,
    topic: &'a str,
    partition: i32,
    artifacts: &'a mut Vec<Artifact>,
    oldest: &'a mut Option<i64>,
}

/// An open segment: its stream and what it holds so far.
struct Open {
    out: ObjectStream,
    seg: Segment,
    bytes: usize,
}

impl PartitionCopy<'_> {
    fn run(
        &mut self,
        c: &mut Cluster,
        leader: i32,
        start: i64,
        cut: i64,
        done: &mut u64,
        total: u64,
    ) -> Result<Partition, Error> {
        let mut part = Partition {
            partition: self.partition,
            start,
            cut,
            records: 0,
            bytes: 0,
            segments: Vec::new(),
            chained: false,
            chain_records: 0,
        };
        let mut next = start;
        let mut open: Option<Open> = None;
        let mut empty = 0;
        // Aborted transactions the broker listed: (producer id, first offset), by offset.
        let mut aborted: Vec<(i64, i64)> = Vec::new();
        let mut aborting: BTreeSet<i64> = BTreeSet::new();
        while next < cut {
            if sdk::runtime::cancelled() {
                return Err(Error::Cancelled);
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_BYTES * 4)
                .with_isolation_level(READ_COMMITTED)
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(topic(self.topic))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(self.partition)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(next)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(FETCH_BYTES),
                        ]),
                ]);
            let resp = c.broker(BrokerId(leader))?.call(&req, 12)?;
            check(resp.error_code, "fetch")?;
            let what = format!("fetch {}/{} at {next}", self.topic, self.partition);
            let data = resp
                .responses
                .into_iter()
                .flat_map(|t| t.partitions)
                .find(|p| p.partition_index == self.partition)
                .ok_or_else(|| sdk::internal(format!("{what}: no answer for the partition")))?;
            check(data.error_code, &what)?;
            for a in data.aborted_transactions.unwrap_or_default() {
                aborted.push((a.producer_id.0, a.first_offset));
            }
            aborted.sort_by_key(|a| a.1);
            let records = data.records.unwrap_or_default();
            let batches = batch::split(&records)?;
            if batches.is_empty() {
                empty += 1;
                if empty >= EMPTY_FETCHES {
                    return Err(Error::Timeout(format!(
                        "{what}: the broker returned no records below the cut ({cut}) {EMPTY_FETCHES} times"
                    )));
                }
                continue;
            }
            empty = 0;
            for b in batches {
                if b.base_offset() >= cut {
                    next = cut;
                    break;
                }
                next = b.last_offset() + 1;
                // Transactions: the records of an aborted one are left out, and so are
                // the markers (a restore writes without transactions).
                while let Some(&(pid, first)) = aborted.first() {
                    if first > b.last_offset() {
                        break;
                    }
                    aborting.insert(pid);
                    aborted.remove(0);
                }
                if b.is_control() {
                    if b.is_abort_marker() {
                        aborting.remove(&b.producer_id());
                    }
                    continue;
                }
                if b.is_transactional() && aborting.contains(&b.producer_id()) {
                    continue;
                }
                self.write(&mut open, &mut part, b)?;
                *done += b.count() as u64;
            }
            sdk::log::progress(
                &format!("{}/{}", self.topic, self.partition),
                *done,
                Some(total),
            );
        }
        if let Some(o) = open.take() {
            self.close(o, &mut part)?;
        }
        Ok(part)
    }

    fn write(
        &mut self,
        open: &mut Option<Open>,
        part: &mut Partition,
        b: batch::Batch<'_>,
    ) -> Result<(), Error> {
        if open.is_none() {
            let key = format!(
                "topics/{}/{}/{:020}.batches",
                self.topic,
                self.partition,
                b.base_offset()
            );
            *open = Some(Open {
                out: ObjectStream::create(self.store, &key, &sdk::compressed())?,
                seg: Segment {
                    key,
                    first_offset: b.base_offset(),
                    last_offset: b.last_offset(),
                    batches: 0,
                },
                bytes: 0,
            });
        }
        let o = open.as_mut().unwrap();
        o.out
            .write_all(b.0)
            .map_err(|e| Error::Io(format!("{}: {e}", o.seg.key)))?;
        o.seg.last_offset = b.last_offset();
        o.seg.batches += 1;
        o.bytes += b.0.len();
        part.records += b.count() as u64;
        part.bytes += b.0.len() as u64;
        let ts = b.base_timestamp();
        if ts >= 0 && self.oldest.is_none_or(|o| ts < o) {
            *self.oldest = Some(ts);
        }
        if o.bytes >= SEGMENT_BYTES {
            let o = open.take().unwrap();
            self.close(o, part)?;
        }
        Ok(())
    }

    fn close(&mut self, o: Open, part: &mut Partition) -> Result<(), Error> {
        let info = o.out.finish()?;
        self.artifacts
            .push(sdk::artifact("segment", LOCATION, &info));
        part.segments.push(o.seg);
        Ok(())
    }
}
