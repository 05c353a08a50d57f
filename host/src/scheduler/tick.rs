//! One tick of a Policy in local mode: a backup of every selected workload, then retention
//! over the restore points the Policy made (per workload). Each backup's ActionSet is named
//! after the Policy, the workload and the tick, so a tick that ran is never run again; each
//! deletion is an ActionSet of the Blueprint's `delete` action, labelled
//! `coffer.dev/reason=retention`. Restore points made by hand carry no `coffer.dev/policy`
//! label and are never touched.

use crate::action::{ActionRequest, Coffer};
use crate::model::{ActionKind, Kind, Phase, Policy, RestorePoint};
use crate::policy::retention::{self, Verdict};
use crate::policy::rules;
use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::policy::{POLICY_LABEL, REASON_LABEL, TICK_ANNOTATION};

/// What one tick did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TickReport {
    pub policy: String,
    pub tick: String,
    pub backups: Vec<Outcome>,
    /// Restore points deleted by retention (or that failed to be).
    pub deleted: Vec<Outcome>,
}

/// One ActionSet of a tick.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub workload: String,
    pub action_set: String,
    /// `Completed`, `Failed`, `AlreadyRan`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which tick: a scheduled one (named by its time alone, so it runs once) or one asked for
/// by hand (`coffer policy run`, named apart so two in a second both run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickKind {
    Scheduled,
    Manual,
}

/// The ActionSet name of `policy`'s backup of `workload` at `tick`.
pub fn action_set_name(policy: &str, workload: &str, tick: Timestamp, kind: TickKind) -> String {
    let t = tick.strftime("%Y%m%d-%H%M%S");
    match kind {
        TickKind::Scheduled => format!("policy-{policy}-{workload}-{t}"),
        TickKind::Manual => format!(
            "policy-{policy}-{workload}-{t}-manual-{}",
            hex::encode(getrandom::u32().unwrap_or_default().to_be_bytes())
        ),
    }
}

/// A restore point's time, as retention reads it: the tick it was made for (ticks are
/// whole minutes of the schedule, so retention's periods are the schedule's), else when
/// its backup started.
pub fn restore_point_time(rp: &RestorePoint) -> Option<Timestamp> {
    rp.metadata
        .annotations
        .get(TICK_ANNOTATION)
        .and_then(|t| t.parse().ok())
        .or_else(|| rp.spec.start_time.parse().ok())
}

/// `policy`'s restore points of each workload it selects, oldest first, with the verdict
/// on each (the catalog is read once, however many workloads).
pub fn verdicts(
    coffer: &Coffer,
    policy: &Policy,
) -> Result<BTreeMap<String, Vec<(RestorePoint, Verdict)>>> {
    let r = rules(&policy.spec).map_err(anyhow::Error::msg)?;
    let mut by_workload: BTreeMap<String, Vec<(RestorePoint, Timestamp)>> = policy
        .spec
        .selector
        .workloads
        .iter()
        .map(|w| (w.clone(), Vec::new()))
        .collect();
    let all = coffer.catalog.list::<RestorePoint>(Kind::RestorePoint)?;
    for rp in &all {
        if rp.metadata.labels.get(POLICY_LABEL).map(String::as_str) != Some(policy.name()) {
            continue;
        }
        if let (Some(list), Some(t)) = (
            by_workload.get_mut(&rp.spec.workload),
            restore_point_time(rp),
        ) {
            list.push((rp.clone(), t));
        }
    }
    Ok(by_workload
        .into_iter()
        .map(|(w, mut rps)| {
            rps.sort_by_key(|(_, t)| *t);
            let times: Vec<Timestamp> = rps.iter().map(|(_, t)| *t).collect();
            let verdicts = retention::apply(&times, r.keep, &r.timezone);
            let mut judged: Vec<(RestorePoint, retention::Verdict)> =
                rps.into_iter().map(|(rp, _)| rp).zip(verdicts).collect();
            crate::action::chain::keep_bases(&mut judged, &all);
            (w, judged)
        })
        .collect())
}

/// Run one tick of `policy` at `tick` (the time the ticks are named after).
pub async fn tick(
    coffer: &Coffer,
    policy: &Policy,
    tick: Timestamp,
    kind: TickKind,
) -> Result<TickReport> {
    rules(&policy.spec)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("Policy {}", policy.name()))?;
    let mut report = TickReport {
        policy: policy.name().to_string(),
        tick: tick.to_string(),
        backups: Vec::new(),
        deleted: Vec::new(),
    };
    let labels = BTreeMap::from([(POLICY_LABEL.to_string(), policy.name().to_string())]);
    for workload in &policy.spec.selector.workloads {
        let name = action_set_name(policy.name(), workload, tick, kind);
        if coffer
            .catalog
            .get::<serde_json::Value>(Kind::ActionSet, &name)?
            .is_some()
        {
            report.backups.push(Outcome {
                workload: workload.clone(),
                action_set: name,
                result: "AlreadyRan".into(),
                restore_point: None,
                error: None,
            });
            continue;
        }
        let req = ActionRequest {
            action: ActionKind::Backup,
            workload: Some(workload.clone()),
            profile: policy.spec.profile.clone(),
            params: policy.spec.params.clone().into_iter().collect(),
            name: Some(name.clone()),
            labels: labels.clone(),
            annotations: BTreeMap::from([(TICK_ANNOTATION.to_string(), tick.to_string())]),
            full_every: policy.spec.full_every,
            ..Default::default()
        };
        report.backups.push(run(coffer, workload, &name, req).await);
    }
    // Retention after the backups, per workload, over this Policy's restore points only.
    for (workload, judged) in verdicts(coffer, policy)? {
        // Newest first: a chain of incrementals retention lets go is deleted from its
        // newest end, so no delete finds its restore point still a base.
        for (rp, v) in judged.into_iter().rev() {
            if v.keep {
                continue;
            }
            let name = format!("retention-{}", rp.name());
            let req = ActionRequest {
                action: ActionKind::Delete,
                restore_point: Some(rp.name().to_string()),
                name: Some(name.clone()),
                labels: BTreeMap::from([
                    (POLICY_LABEL.to_string(), policy.name().to_string()),
                    (REASON_LABEL.to_string(), "retention".to_string()),
                ]),
                ..Default::default()
            };
            let mut o = run(coffer, &workload, &name, req).await;
            o.restore_point = Some(rp.name().to_string());
            report.deleted.push(o);
        }
    }
    Ok(report)
}

async fn run(coffer: &Coffer, workload: &str, name: &str, req: ActionRequest) -> Outcome {
    let mut o = Outcome {
        workload: workload.to_string(),
        action_set: name.to_string(),
        result: "Failed".into(),
        restore_point: None,
        error: None,
    };
    let prepared = match coffer.prepare(req).await {
        Ok(p) => p,
        Err(e) => {
            o.error = Some(format!("{e:#}"));
            return o;
        }
    };
    match coffer.run(&prepared).await {
        Ok(set) => {
            o.result = format!("{:?}", set.status.phase);
            o.restore_point = set.status.restore_point.clone();
            if set.status.phase != Phase::Completed {
                o.error = set.status.error.clone();
            }
        }
        Err(e) => o.error = Some(format!("{e:#}")),
    }
    o
}
