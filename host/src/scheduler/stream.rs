//! A Policy's stream (local mode): between its ticks, each selected workload whose plugin
//! makes incremental backups gets a link every `spec.stream.every` — an incremental backup
//! on its newest restore point, labelled with the Policy (and `coffer.dev/stream`), so
//! retention keeps and deletes links as it does the Policy's other restore points, and a
//! restore `--at T` takes the newest link at or before T. A link that finds nothing new
//! makes no restore point. Each workload's last link, chain length and lag are kept on the
//! Policy's status (`coffer describe policy`).

use crate::action::{ActionRequest, Coffer};
use crate::model::{ActionKind, Phase, Policy, StreamStatus};
use crate::policy::{POLICY_LABEL, TICK_ANNOTATION};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// The label a stream's restore points carry (its value: the Policy).
pub const STREAM_LABEL: &str = "coffer.dev/stream";

/// When the next links fall due: `every` after `started`, or at once when a link ended at
/// least `max_lag` records behind.
pub fn next_due(
    started: Timestamp,
    every: std::time::Duration,
    max_lag: Option<u64>,
    statuses: &[StreamStatus],
) -> Timestamp {
    let behind = max_lag.is_some_and(|max| {
        statuses
            .iter()
            .any(|s| s.error.is_none() && s.lag_records.is_some_and(|l| l >= max))
    });
    if behind {
        return started;
    }
    started + jiff::SignedDuration::try_from(every).unwrap_or(jiff::SignedDuration::MAX)
}

/// Make one link of each of `policy`'s streamed workloads; their statuses, by workload, on
/// top of `before` (the Policy's status as it was).
pub async fn links(
    coffer: &Coffer,
    policy: &Policy,
    now: Timestamp,
    before: &[StreamStatus],
) -> Vec<StreamStatus> {
    let mut out = Vec::new();
    for workload in &policy.spec.selector.workloads {
        let mut st = before
            .iter()
            .find(|s| &s.workload == workload)
            .cloned()
            .unwrap_or_else(|| StreamStatus {
                workload: workload.clone(),
                ..Default::default()
            });
        match coffer.makes_incrementals(workload) {
            Ok(true) => link(coffer, policy, workload, now, &mut st).await,
            Ok(false) => st.error = Some(
                "its plugin makes full backups only: not streamed (the Policy's ticks back it up)"
                    .into(),
            ),
            Err(e) => st.error = Some(format!("{e:#}")),
        }
        out.push(st);
    }
    out
}

async fn link(
    coffer: &Coffer,
    policy: &Policy,
    workload: &str,
    now: Timestamp,
    st: &mut StreamStatus,
) {
    let name = format!(
        "stream-{}-{workload}-{}",
        policy.name(),
        now.strftime("%Y%m%d-%H%M%S")
    );
    let req = ActionRequest {
        action: ActionKind::Backup,
        workload: Some(workload.to_string()),
        profile: policy.spec.profile.clone(),
        params: policy.spec.params.clone().into_iter().collect(),
        name: Some(name.clone()),
        labels: BTreeMap::from([
            (POLICY_LABEL.to_string(), policy.name().to_string()),
            (STREAM_LABEL.to_string(), policy.name().to_string()),
        ]),
        annotations: BTreeMap::from([(TICK_ANNOTATION.to_string(), now.to_string())]),
        stream: true,
        ..Default::default()
    };
    let ran = match coffer.prepare(req).await {
        Ok(p) => coffer.run(&p).await,
        Err(e) => Err(e),
    };
    st.last_link = Some(Timestamp::now().to_string());
    let set = match ran {
        Ok(set) if set.status.phase == Phase::Completed => set,
        Ok(set) => {
            st.error = Some(format!(
                "link {name} {}: {}",
                set.status.phase.as_str(),
                set.status.error.unwrap_or_default()
            ));
            return;
        }
        Err(e) => {
            st.error = Some(format!("link {name}: {e:#}"));
            return;
        }
    };
    st.error = None;
    let outputs = &set.status.outputs;
    st.lag_records = outputs.get("lagRecords").and_then(|v| v.parse().ok());
    match &set.status.restore_point {
        Some(rp) => {
            st.made += 1;
            st.restore_point = Some(rp.clone());
        }
        None => {
            st.unchanged += 1;
            if let Some(base) = outputs.get(crate::action::UNCHANGED_SINCE) {
                st.restore_point = Some(base.clone());
            }
        }
    }
    if let Some(rp) = &st.restore_point {
        (st.links, st.objects) = coffer.chain_size(rp).unwrap_or_default();
    }
    tracing::info!(
        policy = %policy.name(),
        workload,
        restorepoint = st.restore_point.as_deref().unwrap_or(""),
        links = st.links,
        lag = st.lag_records.unwrap_or(0),
        "stream link"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_link_left_far_behind_starts_the_next_at_once() {
        let t: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        let every = Duration::from_secs(30);
        let st = |lag: u64, error: Option<&str>| StreamStatus {
            workload: "w".into(),
            lag_records: Some(lag),
            error: error.map(str::to_string),
            ..Default::default()
        };
        let later: Timestamp = "2026-12-05T10:00:30Z".parse().unwrap();
        assert_eq!(next_due(t, every, None, &[st(1_000_000, None)]), later);
        assert_eq!(next_due(t, every, Some(5000), &[st(4999, None)]), later);
        assert_eq!(
            next_due(t, every, Some(5000), &[st(4999, None), st(5000, None)]),
            t
        );
        // A failed link waits: retrying at once would hammer a server that is down.
        assert_eq!(
            next_due(t, every, Some(5000), &[st(9000, Some("down"))]),
            later
        );
    }
}
