//! Where a restore stops: the end of the backup (`--type=immediate`), or a point in time
//! after it.

use coffer_plugin_sdk::JsonSchema;
use serde::Deserialize;

/// A point-in-time target: exactly one of `time`, `lsn`, `xid`, `name`. WAL is replayed
/// from the restore point's backup up to it (the WAL archive must reach it).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// RFC 3339 (`2026-12-04T08:30:00Z`, `2026-12-04 09:30:00.25+01:00`): transactions
    /// committed up to this moment.
    pub time: Option<String>,
    /// A WAL location (`0/5000100`).
    pub lsn: Option<String>,
    /// A transaction id: replay up to its commit.
    pub xid: Option<String>,
    /// A restore point made with `pg_create_restore_point`.
    pub name: Option<String>,
    /// Stop just before the target instead of just after it.
    #[serde(default)]
    pub exclusive: bool,
}

impl Target {
    /// pgBackRest's `--type` and `--target`, checked.
    pub fn options(&self) -> Result<(&'static str, String), String> {
        let given: Vec<(&'static str, &String)> = [
            ("time", &self.time),
            ("lsn", &self.lsn),
            ("xid", &self.xid),
            ("name", &self.name),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let [(kind, value)] = given[..] else {
            return Err("params.target: give exactly one of time, lsn, xid, name".into());
        };
        match kind {
            "time" => {
                let (_, text) = parse_time(value)?;
                Ok((kind, text))
            }
            "lsn" => lsn(value).map(|_| (kind, value.clone())),
            "xid" => value
                .parse::<u64>()
                .map(|_| (kind, value.clone()))
                .map_err(|_| format!("params.target.xid: {value:?} is not a transaction id")),
            _ => {
                let ok = !value.is_empty()
                    && value.len() <= 63
                    && !value.starts_with('-')
                    && !value.chars().any(char::is_control);
                ok.then(|| (kind, value.clone())).ok_or_else(|| {
                    format!("params.target.name: {value:?} is not a restore point name")
                })
            }
        }
    }

    /// The target as seconds since 1970, for a time target.
    pub fn epoch(&self) -> Option<i64> {
        self.time
            .as_deref()
            .and_then(|t| parse_time(t).ok())
            .map(|(e, _)| e)
    }
}

/// `X/Y` in hex, as a number to compare.
pub fn lsn(v: &str) -> Result<u64, String> {
    let bad = || format!("params.target.lsn: {v:?} is not a WAL location like 0/5000100");
    let (hi, lo) = v.split_once('/').ok_or_else(bad)?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return Err(bad());
    }
    Ok(hi << 32 | lo)
}

/// RFC 3339 (a space instead of the `T` accepted): seconds since 1970, and the time in UTC
/// the way PostgreSQL reads it (`2026-12-04 08:30:00.25+00`).
pub fn parse_time(v: &str) -> Result<(i64, String), String> {
    use time::format_description::well_known::Rfc3339;
    let bad = |e: String| {
        format!(
            "params.target.time: {v:?} is not an RFC 3339 time like 2026-12-04T08:30:00Z, with its offset ({e})"
        )
    };
    let mut text = v.to_string();
    if text.len() > 10 && text.as_bytes()[10] == b' ' {
        text.replace_range(10..11, "T");
    }
    let t = time::OffsetDateTime::parse(&text, &Rfc3339)
        .map_err(|e| bad(e.to_string()))?
        .to_offset(time::UtcOffset::UTC);
    let micros = t.microsecond();
    let frac = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    let text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac}+00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok((t.unix_timestamp(), text))
}
