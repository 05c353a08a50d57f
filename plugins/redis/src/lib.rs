//! redis: Redis backups as RDB snapshots.
//!
//! backup  = `redis-cli --rdb -`: the server forks and sends a point-in-time RDB over the
//!           replication protocol; the host streams it into the location. Works against a
//!           remote server; nothing is read from the server's disk.
//! restore = the RDB is written next to its final name in `dataDir`, checked with
//!           `redis-check-rdb`, then renamed into place, so a half-written or corrupt file
//!           never becomes the one Redis loads. Redis loads it at its next start.
//! delete  = remove the restore point's object.
//!
//! The password reaches redis-cli as REDISCLI_AUTH through a secret handle: never in argv.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, ActionOutput, ActionRequest, Cmd, Error, Plugin, location, log,
};
use serde::Deserialize;

pub struct Redis;

sdk::export_plugin!(Redis, "manifest.json");

const LOCATION: &str = "default";
const RDB_KEY: &str = "dump.rdb";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// The server's host.
    #[serde(default = "localhost")]
    pub host: String,
    /// The server's port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// ACL user (Redis 6+); default: the default user. The password is the workload's
    /// `password` secret.
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// Absolute directory the Redis server starts from (its `dir`).
    pub data_dir: String,
    /// The RDB file name Redis loads (its `dbfilename`).
    #[serde(default = "dump_rdb")]
    pub db_filename: String,
    /// Replace an existing RDB in dataDir (stop Redis first).
    #[serde(default)]
    pub overwrite: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {}

fn localhost() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    6379
}
fn dump_rdb() -> String {
    "dump.rdb".into()
}

impl Plugin for Redis {
    fn params_schema(action: &str) -> Option<serde_json::Value> {
        match action {
            "backup" => Some(sdk::schema_for::<BackupParams>()),
            "restore" => Some(sdk::schema_for::<RestoreParams>()),
            "delete" => Some(sdk::schema_for::<DeleteParams>()),
            _ => None,
        }
    }

    fn validate(req: &ActionRequest) -> Result<(), Vec<String>> {
        match req.action.as_str() {
            "backup" => {
                let p: BackupParams = sdk::params(req)?;
                if p.host.is_empty() || p.host.starts_with('-') {
                    return Err(vec![format!(
                        "params.host: {:?} is not a host name",
                        p.host
                    )]);
                }
                if p.port == 0 {
                    return Err(vec!["params.port: must be between 1 and 65535".into()]);
                }
                Ok(())
            }
            "restore" => {
                let p: RestoreParams = sdk::params(req)?;
                let mut problems = Vec::new();
                if !p.data_dir.starts_with('/') {
                    problems.push(format!(
                        "params.dataDir: {:?} must be an absolute path",
                        p.data_dir
                    ));
                }
                if p.db_filename.is_empty()
                    || p.db_filename.contains('/')
                    || p.db_filename.starts_with('.')
                {
                    problems.push(format!(
                        "params.dbFilename: {:?} must be a plain file name",
                        p.db_filename
                    ));
                }
                if !req.input_artifacts.iter().any(|a| a.key == RDB_KEY) {
                    problems.push("the restore point has no dump.rdb artifact".into());
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems)
                }
            }
            "delete" => sdk::params::<DeleteParams>(req).map(|_| ()),
            other => Err(vec![format!(
                "unknown action {other:?}: this plugin has backup, restore and delete"
            )]),
        }
    }

    fn run(req: ActionRequest) -> Result<ActionOutput, Error> {
        Self::validate(&req).map_err(|e| sdk::invalid(e.join("; ")))?;
        match req.action.as_str() {
            "backup" => backup(&req),
            "restore" => restore(&req),
            "delete" => sdk::delete_input_artifacts(&req, LOCATION),
            other => Err(sdk::invalid(format!("unknown action {other:?}"))),
        }
    }
}

fn backup(req: &ActionRequest) -> Result<ActionOutput, Error> {
    let p: BackupParams = sdk::params(req).map_err(|e| sdk::invalid(e.join("; ")))?;
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;
    let mut cmd = Cmd::new(["redis-cli", "--no-auth-warning", "-h"])
        .arg(&p.host)
        .args(["-p", &p.port.to_string()]);
    if let Some(u) = &p.user {
        cmd = cmd.args(["--user", u]);
    }
    let cmd = cmd
        .args(["--rdb", "-"])
        .secret_env("REDISCLI_AUTH", pw.as_ref());
    let info = cmd.stdout_to(&store, RDB_KEY, &sdk::compressed())?;
    // redis-cli exits 0 with an empty output when it could not talk to the server in some
    // versions; an RDB always starts with its magic, so a tiny object is not one.
    if info.size < 9 {
        return Err(sdk::internal(format!(
            "redis-cli produced {} bytes, not an RDB snapshot",
            info.size
        )));
    }
    log::info("pulled RDB", &[("bytes", &info.size.to_string())]);
    let mut a = sdk::artifact("rdb", LOCATION, &info);
    a.metadata.push(("format".into(), "rdb".into()));
    Ok(ActionOutput {
        artifacts: vec![a],
        outputs: vec![("bytes".into(), info.size.to_string())],
    })
}

fn restore(req: &ActionRequest) -> Result<ActionOutput, Error> {
    let p: RestoreParams = sdk::params(req).map_err(|e| sdk::invalid(e.join("; ")))?;
    let store = location::open(LOCATION)?;
    let dir = p.data_dir.trim_end_matches('/');
    let target = format!("{dir}/{}", p.db_filename);
    let temp = format!("{dir}/.{}.coffer-restore", p.db_filename);
    if Cmd::new(["test", "-d", dir]).run(None, 0).is_err() {
        return Err(sdk::invalid(format!(
            "params.dataDir: {dir} is not a directory; create it first"
        )));
    }
    if !p.overwrite && Cmd::new(["test", "-e", &target]).run(None, 0).is_ok() {
        return Err(sdk::invalid(format!(
            "{target} exists; stop Redis and set params.overwrite to replace it"
        )));
    }
    Cmd::new(["dd", "status=none", "bs=1M"])
        .arg(format!("of={temp}"))
        .stdin_from(&store, RDB_KEY)
        .inspect_err(|_| {
            let _ = Cmd::new(["rm", "-f", &temp]).run(None, 0);
        })?;
    if let Err(e) = Cmd::new(["redis-check-rdb", &temp]).run(None, 1 << 20) {
        let _ = Cmd::new(["rm", "-f", &temp]).run(None, 0);
        return Err(sdk::internal(format!(
            "the restored RDB does not pass redis-check-rdb, {target} was left as it was: {}",
            sdk::error_text(&e)
        )));
    }
    Cmd::new(["mv", "-f", &temp, &target]).run(None, 0)?;
    log::info("placed RDB", &[("path", &target)]);
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![("path".into(), target)],
    })
}
