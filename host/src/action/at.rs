//! `--at TIME`: the newest restore point of a workload taken at or before a point in time
//! (the CLI's `restore --at`, the dashboard's point-in-time restore).

use super::Coffer;
use crate::model::{Kind, RestorePoint};
use anyhow::{Result, anyhow};

/// The restore point chosen for a point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub name: String,
    pub taken: jiff::Timestamp,
    pub at: jiff::Timestamp,
}

/// The time `at` names (RFC 3339, or a civil time read as UTC).
pub fn parse_at(at: &str) -> Result<jiff::Timestamp> {
    at.parse()
        .or_else(|_| {
            at.parse::<jiff::civil::DateTime>()
                .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
                .map(|z| z.timestamp())
        })
        .map_err(|_| anyhow!("--at {at:?}: give a time like 2026-12-01T08:00:00Z"))
}

/// Of `candidates` (restore point names with when their backup started), the newest
/// taken at or before `at`; `what` names the workload in errors, `listing` the command
/// that lists them.
pub fn newest_at<'a>(
    candidates: impl Iterator<Item = (&'a str, &'a str)>,
    at: &str,
    what: &str,
    listing: &str,
) -> Result<Chosen> {
    let when = parse_at(at)?;
    let (taken, name) = candidates
        .filter_map(|(name, start)| {
            let t: jiff::Timestamp = start.parse().ok()?;
            (t <= when).then_some((t, name.to_string()))
        })
        .max()
        .ok_or_else(|| {
            anyhow!("{what} has no RestorePoint taken at or before {when}; `{listing}` lists them")
        })?;
    tracing::info!(restorepoint = %name, taken = %taken, at = %when, "the newest RestorePoint taken at or before the time asked for");
    Ok(Chosen {
        name,
        taken,
        at: when,
    })
}

impl Coffer {
    /// The newest of local `workload`'s restore points taken at or before `at`.
    pub fn restore_point_at(&self, workload: &str, at: &str) -> Result<Chosen> {
        let all = self.catalog.list::<RestorePoint>(Kind::RestorePoint)?;
        newest_at(
            all.iter()
                .filter(|rp| rp.spec.workload == workload)
                .map(|rp| (rp.name(), rp.spec.start_time.as_str())),
            at,
            &format!("Workload {workload}"),
            "coffer get restorepoints",
        )
    }
}
