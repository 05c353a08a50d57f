//! What pgBackRest says about a stanza: `info --output=json`, and `verify --output=text`.

use coffer_plugin_sdk::{self as sdk, Cmd, Error};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct Stanza {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub backup: Vec<Set>,
    #[serde(default)]
    pub db: Vec<Db>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct Db {
    pub id: u64,
    #[serde(rename = "system-id")]
    pub system_id: u64,
    pub version: String,
}

/// One backup set.
#[derive(Debug, Clone, Deserialize)]
pub struct Set {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub prior: Option<String>,
    pub reference: Option<Vec<String>>,
    #[serde(default)]
    pub error: bool,
    pub archive: Range,
    pub lsn: Option<Range>,
    pub timestamp: Times,
    pub info: Sizes,
    pub database: SetDb,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Range {
    pub start: Option<String>,
    pub stop: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Times {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sizes {
    pub size: u64,
    pub delta: u64,
    pub repository: RepoSizes,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoSizes {
    pub size: u64,
    pub delta: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SetDb {
    pub id: u64,
    #[serde(rename = "repo-key")]
    pub repo_key: u64,
}

/// pgBackRest's status codes for a stanza that is not there yet.
pub const MISSING_STANZA_PATH: i64 = 1;
pub const MISSING_STANZA_DATA: i64 = 3;

/// `pgbackrest` with the stanza named (when known; else the Workload's PGBACKREST_STANZA,
/// which the host passes as `--stanza`).
pub fn pgbackrest(stanza: Option<&str>) -> Cmd<'static> {
    let cmd = Cmd::new(["pgbackrest"]);
    match stanza {
        Some(s) => cmd.arg(format!("--stanza={s}")),
        None => cmd,
    }
}

/// `info` of one stanza: the named one, or the only one the configuration has.
pub fn stanza(name: Option<&str>) -> Result<Stanza, Error> {
    let out = pgbackrest(name)
        .args(["--output=json", "info"])
        .run(None, 16 << 20)
        .map_err(|e| {
            sdk::internal(format!(
                "pgbackrest info failed ({}); is pgBackRest installed and its configuration readable by the Workload's user (spec.runAs)?",
                sdk::error_text(&e)
            ))
        })?;
    let mut all: Vec<Stanza> = serde_json::from_slice(&out).map_err(|e| {
        sdk::internal(format!(
            "pgbackrest info --output=json printed something unexpected ({e}): {}",
            String::from_utf8_lossy(&out[..out.len().min(400)])
        ))
    })?;
    match (all.len(), name) {
        (1, _) => Ok(all.remove(0)),
        (0, Some(n)) => Err(sdk::invalid(format!(
            "pgBackRest's configuration has no stanza {n:?}"
        ))),
        (0, None) => Err(sdk::invalid(
            "pgBackRest's configuration names no stanza: add one to pgbackrest.conf, and name it with params.stanza or PGBACKREST_STANZA in the Workload's env",
        )),
        _ => Err(sdk::invalid(format!(
            "pgBackRest's configuration has stanzas {}: name one with params.stanza or PGBACKREST_STANZA in the Workload's env",
            all.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl Stanza {
    pub fn labels(&self) -> Vec<String> {
        self.backup.iter().map(|b| b.label.clone()).collect()
    }

    /// The newest set whose label is not in `before`: the one a backup just made.
    pub fn newest_since(&self, before: &[String]) -> Option<&Set> {
        self.backup
            .iter()
            .rev()
            .find(|b| !before.contains(&b.label))
    }

    pub fn set(&self, label: &str) -> Option<&Set> {
        self.backup.iter().find(|b| b.label == label)
    }

    /// The sets that need `label` (incrementals and differentials built on it).
    pub fn dependents(&self, label: &str) -> Vec<&str> {
        self.backup
            .iter()
            .filter(|b| {
                b.prior.as_deref() == Some(label)
                    || b.reference
                        .as_ref()
                        .is_some_and(|r| r.iter().any(|x| x == label))
            })
            .map(|b| b.label.as_str())
            .collect()
    }

    pub fn system_id(&self, db_id: u64) -> Option<u64> {
        self.db.iter().find(|d| d.id == db_id).map(|d| d.system_id)
    }
}

/// One line of `verify --output=text --verbose`: `backup: LABEL, status: valid, …`, or the
/// WAL of an archive id with its counts.
#[derive(Debug, PartialEq)]
pub enum Verified {
    Backup {
        label: String,
        valid: bool,
        line: String,
    },
    Wal {
        clean: bool,
        line: String,
    },
}

pub fn parse_verify(text: &str) -> Vec<Verified> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("backup: ") {
            let (label, status) = rest.split_once(',').unwrap_or((rest, ""));
            let detail = lines.next_if(|l| !l.contains(':') || l.starts_with("missing"));
            out.push(Verified::Backup {
                label: label.trim().to_string(),
                valid: status.trim().starts_with("status: valid"),
                line: format!("{line} {}", detail.unwrap_or_default())
                    .trim()
                    .to_string(),
            });
        } else if line.starts_with("archiveId: ") {
            let counts = lines
                .next_if(|l| l.starts_with("missing"))
                .unwrap_or_default();
            let clean = counts.is_empty() || counts.split(',').all(|kv| kv.trim().ends_with(": 0"));
            out.push(Verified::Wal {
                clean,
                line: format!("{line} {counts}").trim().to_string(),
            });
        }
    }
    out
}
