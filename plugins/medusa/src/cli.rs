//! The medusa CLI as the plugin drives it. Every command runs as `medusa COMMAND OPTIONS`;
//! the host puts the Workload's `--config-file` in front (MEDUSA_CONFIG_FILE), so the
//! plugin never names a configuration.

use coffer_plugin_sdk::{self as sdk, Cmd, Error};
use serde::{Deserialize, Serialize};

/// `medusa COMMAND --backup-name=NAME`.
pub fn medusa<'a>(command: &str, backup: &str) -> Cmd<'a> {
    Cmd::new(["medusa", command]).arg(format!("--backup-name={backup}"))
}

/// Run and fail with medusa's own words (the end of its log) when it fails.
pub fn run(cmd: Cmd<'_>, what: &str) -> Result<Vec<u8>, Error> {
    cmd.run(None, 4 << 20).map_err(|e| {
        let text = sdk::error_text(&e);
        match e {
            Error::Denied(_) | Error::NotFound(_) | Error::InvalidArgument(_) => e,
            _ => sdk::internal(format!("medusa {what}: {text}")),
        }
    })
}

/// One node's part of a backup, as `medusa status -o json` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub fqdn: String,
    #[serde(default)]
    pub started: Option<f64>,
    #[serde(default)]
    pub finished: Option<f64>,
    #[serde(default, alias = "num_objects")]
    pub num_objects: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default, alias = "release_version")]
    pub release_version: Option<String>,
}

/// A backup as `medusa status --output=json` reports it (its `to_json_dict`).
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub name: String,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    #[serde(default)]
    pub backup_type: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub num_objects: u64,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub incomplete_nodes_list: Vec<Node>,
    #[serde(default)]
    pub missing_nodes_list: Vec<String>,
}

impl Status {
    /// Why this backup cannot be used, if it cannot: a node that started and never finished
    /// (a backup cut short), or no node at all.
    pub fn unusable(&self) -> Option<String> {
        if !self.incomplete_nodes_list.is_empty() {
            let nodes: Vec<&str> = self
                .incomplete_nodes_list
                .iter()
                .map(|n| n.fqdn.as_str())
                .collect();
            return Some(format!(
                "medusa backup {} is incomplete on {} (it started there and never finished)",
                self.name,
                nodes.join(", ")
            ));
        }
        if self.nodes.is_empty() {
            return Some(format!("medusa backup {} has no finished node", self.name));
        }
        None
    }
}

/// `medusa status --backup-name=NAME --output=json`: the backup, or `None` when medusa's
/// storage has no backup of that name.
pub fn status(name: &str) -> Result<Option<Status>, Error> {
    let out = medusa("status", name)
        .arg("--output=json")
        .output(None, 4 << 20)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = stdout.trim();
    if out.status.code == Some(0) {
        let status: Status = serde_json::from_str(text).map_err(|e| {
            sdk::internal(format!(
                "medusa status --output=json printed what this plugin cannot read ({e}): {}",
                text.chars().take(300).collect::<String>()
            ))
        })?;
        return Ok(Some(status));
    }
    // No such backup: medusa logs it and prints `{}`.
    if out.status.code == Some(1)
        && (text == "{}" || out.status.stderr_tail.contains("No such backup"))
    {
        return Ok(None);
    }
    sdk::check_exit("medusa status", &out.status)?;
    Ok(None)
}

/// `medusa delete-backup` of this node's part; a backup medusa does not have is already
/// deleted.
pub fn delete(name: &str) -> Result<bool, Error> {
    if status(name)?.is_none() {
        return Ok(false);
    }
    run(
        medusa("delete-backup", name).arg("--current-node"),
        "delete-backup",
    )?;
    Ok(true)
}

/// A backup name coffer makes: `coffer-20261205T104512-1a2b3c` (`tag` after `coffer-` for
/// the backups a restore makes of what it replaces).
pub fn new_name(tag: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let t =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "coffer-{tag}{:04}{:02}{:02}T{:02}{:02}{:02}-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        sdk::unique_suffix()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_of_medusa_0_31_is_read() {
        // What medusa 0.31.0 prints for a one-node backup (`status --output=json`).
        let json = r#"{"backup_type": "full", "completed_nodes": 1, "finished": 1764930000, "incomplete_nodes": 0, "incomplete_nodes_list": [], "missing_nodes": 0, "missing_nodes_list": [], "name": "b1", "nodes": [{"finished": 1764930000, "fqdn": "127.0.0.1", "num_objects": 58, "release_version": "5.0.9", "server_type": "cassandra", "size": 61234, "started": 1764929990}], "num_objects": 58, "size": 61234, "started": 1764929990}"#;
        let s: Status = serde_json::from_str(json).unwrap();
        assert_eq!(s.nodes[0].num_objects, 58);
        assert_eq!(s.nodes[0].release_version.as_deref(), Some("5.0.9"));
        assert!(s.unusable().is_none());
        // A node that started and never finished makes the backup unusable.
        let cut = json.replace(
            r#""incomplete_nodes_list": []"#,
            r#""incomplete_nodes_list": [{"fqdn": "10.0.0.2", "started": 1, "finished": null, "size": 0, "num_objects": 0}]"#,
        );
        let s: Status = serde_json::from_str(&cut).unwrap();
        assert!(s.unusable().unwrap().contains("incomplete on 10.0.0.2"));
        // No finished node at all, too.
        let none = json.replace(r#""nodes": [{"#, r#""nodes": [], "x": [{"#);
        let s: Status = serde_json::from_str(&none).unwrap();
        assert!(s.unusable().unwrap().contains("no finished node"));
    }

    #[test]
    fn names_are_ones_the_argument_policy_accepts() {
        let n = new_name("before-restore-");
        assert!(n.starts_with("coffer-before-restore-2"), "{n}");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }
}
