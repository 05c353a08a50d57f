//! When a Policy's ticks fall: `@hourly` … `@yearly`, `@onDemand`, or a 5-field cron
//! (minute hour day-of-month month day-of-week; `*`, `a-b`, `*/n`, `a-b/n`, lists, month and
//! day names; day-of-month and day-of-week, when both are restricted, match either, as in
//! cron) in a time zone. Ticks are civil times in that zone: a civil time that does not exist
//! (the hour skipped when clocks go forward) is no tick; one that happens twice (the hour
//! repeated when they go back) is one tick, at its first occurrence. So ticks strictly
//! increase and none runs twice.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// How far ahead a tick is looked for (a cron like `0 0 30 2 *` never fires).
const HORIZON_DAYS: i64 = 8 * 366;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frequency {
    /// Only when asked (`coffer policy run`).
    OnDemand,
    Cron(Cron),
}

/// The allowed values of each cron field, as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day-of-month / day-of-week given as `*`: then the other alone decides.
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Frequency {
    pub fn parse(s: &str) -> Result<Frequency, String> {
        let s = s.trim();
        let cron = match s {
            "@onDemand" | "@ondemand" => return Ok(Frequency::OnDemand),
            "@hourly" => "0 * * * *",
            "@daily" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "{other:?} is not one of @hourly, @daily, @weekly, @monthly, @yearly, @onDemand"
                ));
            }
            other => other,
        };
        Cron::parse(cron).map(Frequency::Cron)
    }

    /// The first tick after `t` in `tz`; none for `@onDemand` or a cron that never fires.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Frequency::OnDemand => None,
            Frequency::Cron(c) => c.next_after(t, tz),
        }
    }

    /// The last tick at or before `t` (a scheduler that was down looks back with this).
    pub fn last_at_or_before(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Frequency::OnDemand => None,
            Frequency::Cron(c) => c.last_at_or_before(t, tz),
        }
    }
}

fn field(
    text: &str,
    what: &str,
    (lo, hi): (u32, u32),
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), String> {
    let value = |v: &str| -> Result<u32, String> {
        let lower = v.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + name_base);
        }
        let n: u32 = v.parse().map_err(|_| {
            format!(
                "{what}: {v:?} is not a number{}",
                if names.is_empty() { "" } else { " or a name" }
            )
        })?;
        if n < lo || n > hi {
            return Err(format!("{what}: {n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(format!("{what}: range {range:?} runs backwards"));
        }
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok((set, text == "*"))
}

impl Cron {
    pub fn parse(s: &str) -> Result<Cron, String> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "{s:?}: a cron has 5 fields (minute hour day-of-month month day-of-week), this has {}",
                f.len()
            ));
        }
        let (minutes, _) = field(f[0], "minute", (0, 59), &[], 0)?;
        let (hours, _) = field(f[1], "hour", (0, 23), &[], 0)?;
        let (days, any_day) = field(f[2], "day-of-month", (1, 31), &[], 0)?;
        let (months, _) = field(f[3], "month", (1, 12), &MONTHS, 1)?;
        let (mut weekdays, any_weekday) = field(f[4], "day-of-week", (0, 7), &WEEKDAYS, 0)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            any_day,
            any_weekday,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The tick of civil time `dt`: its first occurrence; none if it does not exist.
    fn tick(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
        let ambiguous = tz.to_ambiguous_timestamp(dt);
        match ambiguous.offset() {
            AmbiguousOffset::Gap { .. } => None,
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                ambiguous.earlier().ok()
            }
        }
    }

    /// Civil times of a matching day, in order.
    fn times_of(&self, d: Date) -> impl Iterator<Item = DateTime> + '_ {
        (0..24i8)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| d.at(h, m, 0, 0))
            })
    }

    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // From the day before (a fold can put a later civil time's first occurrence at an
        // earlier instant than `t`'s civil time suggests), first tick strictly after `t`.
        let start = t.to_zoned(tz.clone()).date().yesterday().ok()?;
        let mut d = start;
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(d) {
                for dt in self.times_of(d) {
                    if let Some(tick) = Self::tick(dt, tz)
                        && tick > t
                    {
                        return Some(tick);
                    }
                }
            }
            d = d.tomorrow().ok()?;
        }
        None
    }

    pub fn last_at_or_before(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut d = t.to_zoned(tz.clone()).date().tomorrow().ok()?;
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(d) {
                let times: Vec<DateTime> = self.times_of(d).collect();
                for dt in times.into_iter().rev() {
                    if let Some(tick) = Self::tick(dt, tz)
                        && tick <= t
                    {
                        return Some(tick);
                    }
                }
            }
            d = d.yesterday().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ticks(freq: &str, from: &str, n: usize, tz: &TimeZone) -> Vec<String> {
        let f = Frequency::parse(freq).unwrap();
        let mut t = ts(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = f.next_after(t, tz).unwrap();
            out.push(t.to_zoned(tz.clone()).strftime("%F %T%:z").to_string());
        }
        out
    }

    #[test]
    fn across_berlins_dst_changes_the_missing_time_is_skipped_and_the_repeated_one_runs_once() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST — 02:30 does not exist that day.
        assert_eq!(
            ticks("30 2 * * *", "2026-03-27T12:00:00Z", 3, &berlin),
            [
                "2026-03-28 02:30:00+01:00",
                "2026-03-30 02:30:00+02:00",
                "2026-03-31 02:30:00+02:00"
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET — 02:30 happens twice, runs once.
        assert_eq!(
            ticks("30 2 * * *", "2026-10-24T12:00:00Z", 2, &berlin),
            ["2026-10-25 02:30:00+02:00", "2026-10-26 02:30:00+01:00"]
        );
        // Hourly through the repeated hour: 02:00 once.
        assert_eq!(
            ticks("@hourly", "2026-10-24T22:30:00Z", 3, &berlin),
            [
                "2026-10-25 01:00:00+02:00",
                "2026-10-25 02:00:00+02:00",
                "2026-10-25 03:00:00+01:00"
            ]
        );
        // Asked from inside the repeated hour (second pass): 02:30 already ran.
        let second_pass = ts("2026-10-25T01:10:00Z"); // 02:10 CET
        let next = Frequency::parse("30 2 * * *")
            .unwrap()
            .next_after(second_pass, &berlin)
            .unwrap();
        assert_eq!(next, ts("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn cron_fields_and_frequencies() {
        let utc = TimeZone::UTC;
        assert_eq!(
            ticks("*/20 9-10 * * mon-fri", "2026-12-04T10:30:00Z", 3, &utc),
            [
                "2026-12-04 10:40:00+00:00",
                "2026-12-07 09:00:00+00:00",
                "2026-12-07 09:20:00+00:00"
            ]
        );
        // Day-of-month or day-of-week when both are restricted.
        assert_eq!(
            ticks("0 0 13 * 5", "2026-02-01T00:00:00Z", 3, &utc),
            [
                "2026-02-06 00:00:00+00:00",
                "2026-02-13 00:00:00+00:00",
                "2026-02-20 00:00:00+00:00"
            ]
        );
        assert_eq!(
            ticks("@weekly", "2026-12-03T00:00:00Z", 1, &utc),
            ["2026-12-06 00:00:00+00:00"]
        );
        assert_eq!(
            ticks("@yearly", "2026-12-03T00:00:00Z", 1, &utc),
            ["2027-01-01 00:00:00+00:00"]
        );
        assert_eq!(Frequency::parse("@onDemand").unwrap(), Frequency::OnDemand);
        assert!(
            Frequency::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2026-01-01T00:00:00Z"), &utc)
                .is_none()
        );
        for (bad, says) in [
            ("@often", "@hourly"),
            ("* * * *", "5 fields"),
            ("61 * * * *", "minute: 61 is outside 0-59"),
            ("0 0 * foo *", "month"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
        ] {
            let e = Frequency::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let last = Frequency::parse("@daily")
            .unwrap()
            .last_at_or_before(ts("2026-12-03T15:00:00Z"), &utc)
            .unwrap();
        assert_eq!(last, ts("2026-12-03T00:00:00Z"));
    }

    #[test]
    fn ticks_strictly_increase() {
        // A property over many crons, zones and starting points (a fixed-seed walk).
        let zones = [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
        ];
        let crons = [
            "*/7 * * * *",
            "30 1-3 * * *",
            "0 2 * * 0",
            "15 */5 1,15 * *",
            "@hourly",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for z in zones {
            let tz = TimeZone::get(z).unwrap();
            for c in crons {
                let f = Frequency::parse(c).unwrap();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut t =
                    Timestamp::from_second(1_700_000_000 + (seed % 50_000_000) as i64).unwrap();
                for _ in 0..400 {
                    let next = f.next_after(t, &tz).unwrap();
                    assert!(next > t, "{c} in {z}: {next} after {t}");
                    t = next;
                }
            }
        }
    }
}
