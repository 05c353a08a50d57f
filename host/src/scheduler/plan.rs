//! What a scheduler does with a Policy at a moment, as a pure decision shared by the local
//! scheduler and the cluster's Lease holder: which ticks fell due since the last one dealt
//! with, which of them is run (the newest, if within `startingDeadline`, not paused, and
//! the Policy's previous tick is not still running), and what is recorded for the others.

use crate::model::{Policy, PolicyRun};
use jiff::{SignedDuration, Timestamp};

/// Ticks looked at in one pass, at most (a Policy created years ago with a per-minute cron
/// must not make the scheduler walk millions of them).
const MAX_DUE: usize = 100_000;

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The newest due tick (recorded as the Policy's `lastTick`), if any fell due.
    pub last_tick: Option<Timestamp>,
    /// Records of ticks not run (Missed, Skipped).
    pub runs: Vec<PolicyRun>,
    /// The tick to run now.
    pub start: Option<Timestamp>,
    /// The next tick after `now` (none: on demand, or paused).
    pub next: Option<Timestamp>,
}

/// Decide for `p` at `now`; `running`: a tick of it is still running.
pub fn plan(p: &Policy, now: Timestamp, running: bool) -> Result<Plan, String> {
    let r = crate::policy::rules(&p.spec)?;
    let since = p
        .status
        .last_tick
        .as_deref()
        .or(p.metadata.creation_timestamp.as_deref())
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or(now);
    let mut plan = Plan {
        next: if p.spec.paused {
            None
        } else {
            r.frequency.next_after(now, &r.timezone)
        },
        ..Plan::default()
    };
    let mut due = Vec::new();
    let mut t = since;
    while let Some(n) = r.frequency.next_after(t, &r.timezone) {
        if n > now || due.len() >= MAX_DUE {
            break;
        }
        due.push(n);
        t = n;
    }
    if !running && let Some(t) = p.status.running_tick.as_deref() {
        // A tick that started and did not finish (its scheduler died): finish it first.
        if let Ok(t) = t.parse() {
            plan.start = Some(t);
            return Ok(plan);
        }
    }
    let Some(&newest) = due.last() else {
        return Ok(plan);
    };
    plan.last_tick = Some(newest);
    if due.len() > 1 {
        plan.runs.push(PolicyRun {
            tick: due[due.len() - 2].to_string(),
            result: "Missed".into(),
            count: due.len() as u64 - 1,
            message: Some("the scheduler was not running at these ticks".into()),
        });
    }
    let late = now.duration_since(newest);
    if p.spec.paused {
        plan.runs
            .push(record(newest, "Skipped", "the Policy is paused"));
    } else if running {
        plan.runs.push(record(
            newest,
            "Skipped",
            "its previous tick was still running",
        ));
    } else if late > SignedDuration::try_from(r.starting_deadline).unwrap_or_default() {
        plan.runs.push(record(
            newest,
            "Missed",
            &format!(
                "{} late, past its startingDeadline",
                humantime::format_duration(late.unsigned_abs())
            ),
        ));
    } else {
        plan.start = Some(newest);
    }
    Ok(plan)
}

/// A run record of one tick.
pub fn record(tick: Timestamp, result: &str, message: &str) -> PolicyRun {
    PolicyRun {
        tick: tick.to_string(),
        result: result.into(),
        count: 1,
        message: Some(message.to_string()),
    }
}

/// Append `runs` to a Policy's status, keeping the newest [`crate::model::POLICY_RUNS_KEPT`].
pub fn push_runs(st: &mut crate::model::PolicyStatus, runs: Vec<PolicyRun>) {
    st.runs.extend(runs);
    let excess = st.runs.len().saturating_sub(crate::model::POLICY_RUNS_KEPT);
    st.runs.drain(..excess);
}

/// The run record of a finished tick: Completed, or Failed naming each failed ActionSet.
pub fn finished(tick: Timestamp, report: &super::tick::TickReport) -> PolicyRun {
    let failed: Vec<String> = report
        .backups
        .iter()
        .chain(&report.deleted)
        .filter(|o| o.result == "Failed")
        .map(|o| {
            format!(
                "{} {}: {}",
                o.workload,
                o.action_set,
                o.error.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if failed.is_empty() {
        PolicyRun {
            tick: tick.to_string(),
            result: "Completed".into(),
            count: 1,
            message: None,
        }
    } else {
        record(tick, "Failed", &failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, PolicySpec, Retention};

    fn hourly(created: &str) -> Policy {
        let mut p = Policy::new(
            Kind::Policy,
            "gold",
            PolicySpec {
                frequency: "@hourly".into(),
                timezone: None,
                full_every: None,
                stream: None,
                selector: crate::model::PolicySelector {
                    workloads: vec!["shop".into()],
                    ..Default::default()
                },
                retention: Retention {
                    hourly: 3,
                    ..Default::default()
                },
                profile: None,
                params: Default::default(),
                paused: false,
                starting_deadline: Some("30m".into()),
            },
        );
        p.metadata.creation_timestamp = Some(created.into());
        p
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_newest_due_tick_runs_and_older_ones_are_missed() {
        let p = hourly("2026-01-01T00:10:00Z");
        // Nothing due before the first hour.
        let none = plan(&p, t("2026-01-01T00:59:00Z"), false).unwrap();
        assert_eq!(none.start, None);
        assert_eq!(none.next, Some(t("2026-01-01T01:00:00Z")));
        // Three ticks slept through; the newest within its deadline runs.
        let p3 = plan(&p, t("2026-01-01T03:20:00Z"), false).unwrap();
        assert_eq!(p3.start, Some(t("2026-01-01T03:00:00Z")));
        assert_eq!(p3.last_tick, p3.start);
        assert_eq!(p3.runs.len(), 1);
        assert_eq!(
            (p3.runs[0].result.as_str(), p3.runs[0].count),
            ("Missed", 2)
        );
        // Past the deadline: recorded, not run.
        let late = plan(&p, t("2026-01-01T03:40:00Z"), false).unwrap();
        assert_eq!(late.start, None);
        assert_eq!(late.runs.last().unwrap().result, "Missed");
        // Still running: skipped.
        let busy = plan(&p, t("2026-01-01T01:01:00Z"), true).unwrap();
        assert_eq!(busy.start, None);
        assert_eq!(busy.runs[0].result, "Skipped");
        // Started by a scheduler that died: finished before anything else.
        let mut died = p.clone();
        died.status.last_tick = Some("2026-01-01T03:00:00Z".into());
        died.status.running_tick = Some("2026-01-01T03:00:00Z".into());
        let resumed = plan(&died, t("2026-01-01T05:10:00Z"), false).unwrap();
        assert_eq!(resumed.start, Some(t("2026-01-01T03:00:00Z")));
        assert_eq!((resumed.last_tick, resumed.runs.len()), (None, 0));
        // Dealt with: nothing more until the next tick.
        let mut done = p.clone();
        done.status.last_tick = Some("2026-01-01T03:00:00Z".into());
        assert_eq!(
            plan(&done, t("2026-01-01T03:30:00Z"), false).unwrap(),
            Plan {
                next: Some(t("2026-01-01T04:00:00Z")),
                ..Plan::default()
            }
        );
    }
}
