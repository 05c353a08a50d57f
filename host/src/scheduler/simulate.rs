//! What a Policy will keep and delete, changing nothing: its restore points now and the
//! ones its ticks over the next days would make (each assumed to succeed), with retention
//! applied after every tick exactly as [`super::tick::tick`] applies it.

use super::tick::verdicts;
use crate::action::Coffer;
use crate::model::Policy;
use crate::policy::retention;
use crate::policy::rules;
use anyhow::Result;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    pub policy: String,
    pub from: String,
    pub until: String,
    pub ticks: usize,
    /// Existing restore points: kept to the end, or deleted at a tick.
    pub existing: Vec<Fate>,
    /// Restore points the ticks would make: how many are still there at the end.
    pub future_made: usize,
    pub future_kept: usize,
    /// Stored bytes of the existing restore points that would be deleted.
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fate {
    pub workload: String,
    pub restore_point: String,
    pub time: String,
    pub stored_size: u64,
    /// When retention would delete it; none: kept to the end.
    pub deleted_at: Option<String>,
    /// Why it is kept now (`hourly`, `daily`, …), empty if the next tick deletes it.
    pub kept_for: Vec<String>,
}

/// Simulate `policy` from `now` for `days` days.
pub fn simulate(coffer: &Coffer, policy: &Policy, now: Timestamp, days: u32) -> Result<Simulation> {
    let r = rules(&policy.spec).map_err(anyhow::Error::msg)?;
    let until = now + SignedDuration::from_hours(24 * days as i64);
    let mut ticks = Vec::new();
    if !policy.spec.paused {
        let mut t = now;
        while let Some(next) = r.frequency.next_after(t, &r.timezone) {
            if next > until {
                break;
            }
            ticks.push(next);
            t = next;
        }
    }
    let mut existing = Vec::new();
    let (mut future_made, mut future_kept) = (0, 0);
    for (workload, judged) in verdicts(coffer, policy)? {
        // (time, index into `existing` or None for a future one)
        let mut points: Vec<(Timestamp, Option<usize>)> = Vec::new();
        for (rp, v) in judged {
            let time = super::tick::restore_point_time(&rp).unwrap_or(now);
            points.push((time, Some(existing.len())));
            existing.push(Fate {
                workload: workload.clone(),
                restore_point: rp.name().to_string(),
                time: time.to_string(),
                stored_size: rp.spec.stored_size,
                deleted_at: None,
                kept_for: v.reasons.iter().map(|s| s.to_string()).collect(),
            });
        }
        for tick in &ticks {
            points.push((*tick, None));
            future_made += 1;
            let times: Vec<Timestamp> = points.iter().map(|(t, _)| *t).collect();
            let verdicts = retention::apply(&times, r.keep, &r.timezone);
            let mut kept = Vec::new();
            for (p, v) in points.into_iter().zip(verdicts) {
                if v.keep {
                    kept.push(p);
                } else if let Some(i) = p.1 {
                    existing[i].deleted_at = Some(tick.to_string());
                }
            }
            points = kept;
        }
        future_kept += points.iter().filter(|(_, i)| i.is_none()).count();
    }
    let bytes_freed = existing
        .iter()
        .filter(|f| f.deleted_at.is_some())
        .map(|f| f.stored_size)
        .sum();
    Ok(Simulation {
        policy: policy.name().to_string(),
        from: now.to_string(),
        until: until.to_string(),
        ticks: ticks.len(),
        existing,
        future_made,
        future_kept,
        bytes_freed,
    })
}
