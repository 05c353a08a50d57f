//! Which restore points a Policy keeps: for each configured period, the newest restore
//! point in each of the last N hours / days / ISO weeks / months / years that have one —
//! the union over the periods, exactly the rule of `restic forget --keep-hourly … --keep-yearly`
//! (checked against restic itself in the tests), so a user can reason about it with a tool
//! they know. Periods are taken in the Policy's time zone. The newest restore point is
//! always kept, whatever the counts.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// How many of each period to keep (0: none by that rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Keep {
    pub fn is_empty(&self) -> bool {
        *self == Keep::default()
    }
}

/// The verdict on one restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Index into the list given to [`apply`].
    pub index: usize,
    pub keep: bool,
    /// Why it is kept: `hourly`, `daily`, `weekly`, `monthly`, `yearly`, `newest`.
    pub reasons: Vec<&'static str>,
}

/// The bucket a time falls in, for one period (the same numbers restic computes).
fn bucket(period: usize, t: &jiff::Zoned) -> i64 {
    let (y, m, d, h) = (
        t.year() as i64,
        t.month() as i64,
        t.day() as i64,
        t.hour() as i64,
    );
    match period {
        0 => y * 1_000_000 + m * 10_000 + d * 100 + h,
        1 => y * 10_000 + m * 100 + d,
        2 => {
            let w = t.date().iso_week_date();
            w.year() as i64 * 100 + w.week() as i64
        }
        3 => y * 100 + m,
        _ => y,
    }
}

const REASONS: [&str; 5] = ["hourly", "daily", "weekly", "monthly", "yearly"];

/// Decide for each of `times` (restore points' creation times, any order) whether `keep`
/// keeps it. One verdict per time, in the order given.
pub fn apply(times: &[Timestamp], keep: Keep, tz: &TimeZone) -> Vec<Verdict> {
    // Newest first; equal times keep their given order (stable).
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|a, b| times[*b].cmp(&times[*a]));
    let mut left = [
        keep.hourly,
        keep.daily,
        keep.weekly,
        keep.monthly,
        keep.yearly,
    ];
    let mut last: [Option<i64>; 5] = [None; 5];
    let mut verdicts: Vec<Verdict> = (0..times.len())
        .map(|index| Verdict {
            index,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    for (rank, &i) in order.iter().enumerate() {
        let local = times[i].to_zoned(tz.clone());
        let v = &mut verdicts[i];
        if rank == 0 {
            v.keep = true;
            v.reasons.push("newest");
        }
        for p in 0..5 {
            if left[p] == 0 {
                continue;
            }
            let b = bucket(p, &local);
            if last[p] != Some(b) {
                last[p] = Some(b);
                left[p] -= 1;
                v.keep = true;
                v.reasons.push(REASONS[p]);
            }
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_newest_of_each_period_is_kept_and_the_newest_always() {
        let times = [
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T10:30:00Z"),
            ts("2026-01-01T11:00:00Z"),
            ts("2026-01-02T09:00:00Z"),
        ];
        let keep = Keep {
            hourly: 2,
            daily: 2,
            ..Keep::default()
        };
        let v = apply(&times, keep, &TimeZone::UTC);
        let kept: Vec<bool> = v.iter().map(|v| v.keep).collect();
        // 01-02 09:00 (newest, hourly, daily), 01-01 11:00 (hourly, daily); 10:30 and 10:00
        // are in hours and a day already counted.
        assert_eq!(kept, [false, false, true, true]);
        assert_eq!(v[3].reasons, ["newest", "hourly", "daily"]);
        // Only yearly 0 everywhere but the newest: still kept.
        let v = apply(&times, Keep::default(), &TimeZone::UTC);
        assert_eq!(v.iter().filter(|v| v.keep).count(), 1);
        assert!(v[3].keep);
    }

    #[test]
    fn days_are_the_policy_time_zones() {
        // 23:30 UTC on Jan 1 is Jan 2 in Berlin: one day there, two in UTC.
        let times = [ts("2026-01-01T23:30:00Z"), ts("2026-01-02T08:00:00Z")];
        let keep = Keep {
            daily: 5,
            ..Keep::default()
        };
        let utc = apply(&times, keep, &TimeZone::UTC);
        let berlin = apply(&times, keep, &TimeZone::get("Europe/Berlin").unwrap());
        assert!(utc[0].keep && utc[1].keep);
        assert!(!berlin[0].keep && berlin[1].keep);
    }
}
