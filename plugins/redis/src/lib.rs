//! redis: Redis backups as RDB snapshots.
//!
//! backup  = `redis-cli --rdb -`: the server forks and sends a point-in-time RDB over the
//!           replication protocol; the host streams it into the location. Works against a
//!           remote server; nothing is read from the server's disk.
//! restore = the host writes the RDB into the action's scratch directory, `redis-check-rdb`
//!           checks it there, then the host installs it in the Workload's data volume
//!           (written beside its final name, then renamed), so a half-written or corrupt
//!           file never becomes the one Redis loads. Redis loads it at its next start.
//! delete  = remove the restore point's object.
//!
//! The password reaches redis-cli as REDISCLI_AUTH through a secret handle: never in argv.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, ActionOutput, ActionRequest, Cmd, Error, Plugin, Scratch, location, log,
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
    /// The server's host. Default: the Workload's REDIS_HOST, else 127.0.0.1. With a
    /// password, the Workload must pin it (REDIS_HOST in spec.env).
    pub host: Option<String>,
    /// The server's port. Default: the Workload's REDIS_PORT, else 6379.
    pub port: Option<u16>,
    /// ACL user (Redis 6+); default: the default user. The password is the workload's
    /// `password` secret.
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// The Workload volume (spec.volumes) that is the directory Redis starts from (its
    /// `dir`).
    #[serde(default = "data")]
    pub volume: String,
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

fn data() -> String {
    "data".into()
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
                if let Some(h) = &p.host
                    && (h.is_empty() || h.starts_with('-'))
                {
                    return Err(vec![format!("params.host: {h:?} is not a host name")]);
                }
                if p.port == Some(0) {
                    return Err(vec!["params.port: must be between 1 and 65535".into()]);
                }
                Ok(())
            }
            "restore" => {
                let p: RestoreParams = sdk::params(req)?;
                let mut problems = Vec::new();
                if p.volume.is_empty() {
                    problems.push("params.volume: name a volume of the Workload".into());
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
    let mut cmd = Cmd::new(["redis-cli", "--no-auth-warning"]);
    if let Some(h) = &p.host {
        cmd = cmd.args(["-h", h]);
    }
    if let Some(port) = p.port {
        cmd = cmd.args(["-p", &port.to_string()]);
    }
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
    let scratch = Scratch::new()?;
    const FILE: &str = "dump.rdb";
    scratch.get(&store, RDB_KEY, FILE)?;
    let target = format!("{}:{}", p.volume, p.db_filename);
    if let Err(e) = Cmd::new(["redis-check-rdb", &scratch.path(FILE)]).run(None, 1 << 20) {
        return Err(sdk::internal(format!(
            "the restored RDB does not pass redis-check-rdb, {target} was left as it was: {}",
            sdk::error_text(&e)
        )));
    }
    scratch
        .install(FILE, &p.volume, &p.db_filename, p.overwrite)
        .map_err(|e| match e {
            Error::Conflict(_) => sdk::invalid(format!(
                "{} exists in volume {}; stop Redis and set params.overwrite to replace it",
                p.db_filename, p.volume
            )),
            e => e,
        })?;
    log::info(
        "placed RDB",
        &[("volume", &p.volume), ("file", &p.db_filename)],
    );
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![("path".into(), target)],
    })
}
