//! Consumer groups: found on every broker (each lists only the groups it coordinates),
//! their committed offsets read and written at their coordinator, and their members
//! counted, since a group with live consumers must not have its offsets moved under it.

use crate::client::{Cluster, Conn, address, check, str, topic};
use crate::model::{Group, GroupOffset};
use coffer_plugin_sdk::{self as sdk, Error, log};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, FindCoordinatorRequest, ListGroupsRequest,
    OffsetCommitRequest, OffsetFetchRequest,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestGroup,
};
use std::collections::{BTreeMap, BTreeSet};

/// GROUP_ID_NOT_FOUND: DescribeGroups of a group nobody made.
const GROUP_ID_NOT_FOUND: i16 = 69;

/// Every group of the cluster, asking each broker for those it coordinates.
fn list(c: &mut Cluster) -> Result<BTreeSet<String>, Error> {
    let mut ids = BTreeSet::new();
    for broker in c.broker_ids() {
        let resp = c
            .broker(BrokerId(broker))?
            .call(&ListGroupsRequest::default(), 4)?;
        check(
            resp.error_code,
            &format!("list consumer groups on broker {broker}"),
        )?;
        ids.extend(resp.groups.iter().map(|g| g.group_id.as_str().to_owned()));
    }
    Ok(ids)
}

/// Every group's committed offsets on the topics `names`.
pub fn offsets(c: &mut Cluster, names: &BTreeSet<String>) -> Result<Vec<Group>, Error> {
    let mut out = Vec::new();
    for id in list(c)? {
        let req = OffsetFetchRequest::default()
            .with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(str(&id).into())
                    .with_topics(None),
            ])
            .with_require_stable(true);
        let resp = coordinator(c, &id)?.call(&req, 8)?;
        let mut offsets = Vec::new();
        for g in resp.groups {
            check(g.error_code, &format!("committed offsets of group {id}"))?;
            for t in g.topics {
                if !names.contains(t.name.as_str()) {
                    continue;
                }
                for p in t.partitions {
                    check(p.error_code, &format!("group {id} on {}", t.name.as_str()))?;
                    if p.committed_offset >= 0 {
                        offsets.push(GroupOffset {
                            topic: t.name.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: p.metadata.map(|m| m.to_string()),
                        });
                    }
                }
            }
        }
        if !offsets.is_empty() {
            offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            out.push(Group { group: id, offsets });
        }
    }
    Ok(out)
}

/// The groups among `ids` that have members now, each with a description of them.
pub fn busy(c: &mut Cluster, ids: &[&str]) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for &id in ids {
        let req = DescribeGroupsRequest::default().with_groups(vec![str(id).into()]);
        let resp = coordinator(c, id)?.call(&req, 5)?;
        for g in resp.groups {
            if g.error_code == GROUP_ID_NOT_FOUND || g.members.is_empty() {
                continue;
            }
            check(g.error_code, &format!("describe consumer group {id}"))?;
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| format!("{} on {}", m.client_id.as_str(), m.client_host.as_str()))
                .collect();
            out.push(format!(
                "{id} ({}, {} member(s): {})",
                g.group_state.as_str(),
                members.len(),
                members.join(", ")
            ));
        }
    }
    Ok(out)
}

/// Commit group `g`'s offsets where `to` maps them: (target topic, new offset), or None to
/// leave one out.
pub fn commit(
    c: &mut Cluster,
    g: &Group,
    to: impl Fn(&GroupOffset) -> Option<(String, i64)>,
) -> Result<(), Error> {
    let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for o in &g.offsets {
        let Some((name, offset)) = to(o) else {
            continue;
        };
        by_topic.entry(name).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(o.partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(o.metadata.as_deref().map(str)),
        );
    }
    if by_topic.is_empty() {
        return Ok(());
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(str(&g.group).into())
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str(""))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, parts)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic(&name))
                        .with_partitions(parts)
                })
                .collect(),
        );
    let resp = coordinator(c, &g.group)?.call(&req, 8)?;
    for t in resp.topics {
        for p in t.partitions {
            // UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION / REBALANCE_IN_PROGRESS: consumers
            // joined after the check before the restore.
            if matches!(p.error_code, 25 | 22 | 27) {
                return Err(Error::Conflict(format!(
                    "consumer group {} has active members: stop its consumers, then run the restore again with params.purge: true (its records are in place; its offsets were not changed)",
                    g.group
                )));
            }
            check(
                p.error_code,
                &format!(
                    "commit group {} on {}/{}",
                    g.group,
                    t.name.as_str(),
                    p.partition_index
                ),
            )?;
        }
    }
    log::info("committed the group's offsets", &[("group", &g.group)]);
    Ok(())
}

/// The connection to group `id`'s coordinator.
fn coordinator<'a>(c: &'a mut Cluster, id: &str) -> Result<&'a mut Conn, Error> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![str(id)]);
    // A new cluster makes its offsets topic on the first ask: the coordinator is not
    // available (15) or still loading (14) for a while.
    let mut tries = 0;
    let co = loop {
        let resp = c.any().call(&req, 4)?;
        let co = resp
            .coordinators
            .into_iter()
            .next()
            .ok_or_else(|| sdk::internal(format!("no coordinator for group {id}")))?;
        tries += 1;
        if matches!(co.error_code, 14 | 15) && tries < 150 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        }
        check(
            co.error_code,
            &format!("find the coordinator of group {id}"),
        )?;
        break co;
    };
    c.at(co.node_id.0, address(&co.host, co.port))
}
