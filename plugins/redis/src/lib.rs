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
    self as sdk, Action, ActionOutput, ActionRequest, Cmd, Error, Scratch, location, log,
};
use serde::Deserialize;

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

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

fn data() -> String {
    "data".into()
}
fn dump_rdb() -> String {
    "dump.rdb".into()
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(h) = &p.host
            && (h.is_empty() || h.starts_with('-'))
        {
            problems.push(format!("params.host: {h:?} is not a host name"));
        }
        if p.port == Some(0) {
            problems.push("params.port: must be between 1 and 65535".into());
        }
        sdk::checked(problems)
    }

    fn run(p: BackupParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        backup(p)
    }
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if p.volume.is_empty() {
            problems.push("params.volume: name a volume of the Workload".into());
        }
        if p.db_filename.is_empty() || p.db_filename.contains('/') || p.db_filename.starts_with('.')
        {
            problems.push(format!(
                "params.dbFilename: {:?} must be a plain file name",
                p.db_filename
            ));
        }
        if !req.input_artifacts.iter().any(|a| a.key == RDB_KEY) {
            problems.push("the restore point has no dump.rdb artifact".into());
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        restore(p)
    }
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
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

fn restore(p: RestoreParams) -> Result<ActionOutput, Error> {
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
