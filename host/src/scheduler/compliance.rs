//! Is each workload protected as its Policies say? Per (workload, Policy): `Compliant` when
//! the last due tick produced its backup and the newest restore point is younger than one
//! period (from that tick to the next) plus the backup's deadline; otherwise `NonCompliant`
//! with why: `Paused`, `ProfileInvalid`, `LastRunFailed`, `Missed`, `NoRestorePoint`. A
//! Workload no Policy selects is `Unmanaged`.

use super::tick::{POLICY_LABEL, restore_point_time};
use crate::action::Coffer;
pub use crate::model::Compliance;
use crate::model::{Kind, Policy, RestorePoint, Workload};
use anyhow::Result;
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

/// A backup's deadline when its Blueprint sets none (the action default).
const BACKUP_DEADLINE: SignedDuration = SignedDuration::from_mins(45);

pub fn compliance(coffer: &Coffer, now: Timestamp) -> Result<Vec<Compliance>> {
    let policies = coffer.catalog.list::<Policy>(Kind::Policy)?;
    let rps = coffer.catalog.list::<RestorePoint>(Kind::RestorePoint)?;
    // Whether each Profile opens, checked once however many workloads use it.
    let mut usable = BTreeMap::new();
    let mut rows = Vec::new();
    for w in coffer.catalog.list::<Workload>(Kind::Workload)? {
        let selecting: Vec<&Policy> = policies
            .iter()
            .filter(|p| p.spec.selector.workloads.iter().any(|n| n == w.name()))
            .collect();
        if selecting.is_empty() {
            rows.push(Compliance::unmanaged(w.name().to_string()));
            continue;
        }
        for p in selecting {
            rows.push(one(coffer, &w, p, &rps, &mut usable, now));
        }
    }
    Ok(rows)
}

fn one(
    coffer: &Coffer,
    w: &Workload,
    p: &Policy,
    rps: &[RestorePoint],
    usable: &mut BTreeMap<String, Result<(), String>>,
    now: Timestamp,
) -> Compliance {
    let newest = rps
        .iter()
        .filter(|rp| {
            rp.spec.workload == w.name()
                && rp.metadata.labels.get(POLICY_LABEL).map(String::as_str) == Some(p.name())
        })
        .filter_map(|rp| restore_point_time(rp).map(|t| (t, rp.name().to_string())))
        .max();
    let profile = p
        .spec
        .profile
        .clone()
        .or_else(|| w.spec.profile.clone())
        .unwrap_or_else(|| "default".into());
    let opens = usable
        .entry(profile.clone())
        .or_insert_with(|| {
            coffer
                .profile(&profile)
                .and_then(|(pr, _)| {
                    crate::storage::Location::from_profile(&pr, &coffer.credentials)
                })
                .map(|_| ())
                .map_err(|e| format!("Profile {profile}: {e:#}"))
        })
        .clone();
    judge(w.name(), p, newest, opens, now)
}

/// The compliance of `workload` under `p` at `now`, given the newest restore point the
/// Policy made of it and whether its Profile is usable (`Err`: why not).
pub fn judge(
    workload: &str,
    p: &Policy,
    newest: Option<(Timestamp, String)>,
    profile: Result<(), String>,
    now: Timestamp,
) -> Compliance {
    let mut row = Compliance {
        workload: workload.to_string(),
        policy: Some(p.name().to_string()),
        state: "NonCompliant".into(),
        reason: None,
        message: None,
        newest_restore_point: newest.as_ref().map(|(_, n)| n.clone()),
        next_run: None,
    };
    let mut non = |reason: &str, message: String| {
        row.reason = Some(reason.into());
        row.message = Some(message);
    };
    let rules = match crate::policy::rules(&p.spec) {
        Ok(r) => r,
        Err(e) => {
            non("Invalid", e);
            return row;
        }
    };
    row.next_run = rules
        .frequency
        .next_after(now, &rules.timezone)
        .map(|t| t.to_string());
    if p.spec.paused {
        non("Paused", "the Policy is paused".into());
        return row;
    }
    if let Err(e) = profile {
        non("ProfileInvalid", e);
        return row;
    }
    let Some(due) = rules.frequency.last_at_or_before(now, &rules.timezone) else {
        // No tick yet (or on demand): judged by whether there is a restore point at all.
        if newest.is_none() {
            non(
                "NoRestorePoint",
                "the Policy has made no restore point yet".into(),
            );
        } else {
            row.state = "Compliant".into();
        }
        return row;
    };
    let created = p
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    if created.is_some_and(|c| c >= due) {
        // Made after its last due tick: nothing was due yet.
        row.state = "Compliant".into();
        if newest.is_none() {
            row.message = Some("no tick has fallen due since the Policy was made".into());
        }
        return row;
    }
    let handled = p
        .status
        .last_tick
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t >= due);
    let last = p.status.runs.last();
    if !handled {
        if now.duration_since(due)
            > SignedDuration::try_from(rules.starting_deadline).unwrap_or_default()
        {
            non(
                "Missed",
                format!("the tick of {due} has not run (is `coffer daemon` running?)"),
            );
            return row;
        }
    } else if let Some(run) = last {
        match run.result.as_str() {
            "Failed" => {
                non("LastRunFailed", run.message.clone().unwrap_or_default());
                return row;
            }
            "Missed" | "Skipped" => {
                non("Missed", run.message.clone().unwrap_or_default());
                return row;
            }
            _ => {}
        }
    }
    let Some((newest_time, _)) = newest else {
        non(
            "NoRestorePoint",
            "the Policy has made no restore point yet".into(),
        );
        return row;
    };
    let next = rules
        .frequency
        .next_after(due, &rules.timezone)
        .unwrap_or(due);
    let period = next.duration_since(due);
    if now.duration_since(newest_time) > period + BACKUP_DEADLINE {
        non(
            "Missed",
            format!("the newest restore point is from {newest_time}, older than one period"),
        );
        return row;
    }
    row.state = "Compliant".into();
    row
}
