//! etcd: etcd v3 snapshots.
//!
//! backup  = `etcdctl snapshot save` into a private temporary directory (etcdctl 3.4 only
//!           writes files), `etcdctl snapshot status` for the revision, key count and hash,
//!           then the file is streamed into the location by `cat`; the directory is removed
//!           whatever happens.
//! restore = the snapshot is streamed into a temporary file and `etcdctl snapshot restore`
//!           builds a new data directory from it, checking the snapshot's integrity hash.
//!           Replacing a running member's data is the operator's step: stop etcd, start it on
//!           the new directory.
//! delete  = remove the restore point's object.
//!
//! The password reaches etcdctl as ETCDCTL_PASSWORD through a secret handle: never in argv.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, ActionOutput, ActionRequest, Cmd, Error, Plugin, location, log, secrets,
};
use serde::Deserialize;

pub struct Etcd;

sdk::export_plugin!(Etcd, "manifest.json");

const LOCATION: &str = "default";
const SNAPSHOT_KEY: &str = "snapshot.db";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// One endpoint: a snapshot is taken from a single member.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// User for etcd auth; the password is the workload's `password` secret.
    pub user: Option<String>,
    /// TLS: the CA certificate, client certificate and key (absolute paths).
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    /// Where etcdctl writes the snapshot before it is streamed out.
    #[serde(default = "tmp")]
    pub temp_dir: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// The new data directory (it must not exist).
    pub data_dir: String,
    /// Member name (default: etcd's, `default`).
    pub name: Option<String>,
    pub initial_cluster: Option<String>,
    pub initial_cluster_token: Option<String>,
    pub initial_advertise_peer_urls: Option<String>,
    /// Where the snapshot is written before etcdctl restores it.
    #[serde(default = "tmp")]
    pub temp_dir: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {}

fn default_endpoint() -> String {
    "127.0.0.1:2379".into()
}
fn tmp() -> String {
    "/tmp".into()
}

/// Absolute paths only: the process runs wherever the workload does.
fn absolute(field: &str, v: &str, problems: &mut Vec<String>) {
    if !v.starts_with('/') {
        problems.push(format!("params.{field}: {v:?} must be an absolute path"));
    }
}

impl Plugin for Etcd {
    fn params_schema(action: &str) -> Option<serde_json::Value> {
        match action {
            "backup" => Some(sdk::schema_for::<BackupParams>()),
            "restore" => Some(sdk::schema_for::<RestoreParams>()),
            "delete" => Some(sdk::schema_for::<DeleteParams>()),
            _ => None,
        }
    }

    fn validate(req: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        match req.action.as_str() {
            "backup" => {
                let p: BackupParams = sdk::params(req)?;
                if p.endpoint.is_empty() || p.endpoint.contains(',') || p.endpoint.starts_with('-')
                {
                    problems.push(format!(
                        "params.endpoint: {:?} must be one endpoint (a snapshot is taken from one member)",
                        p.endpoint
                    ));
                }
                for (f, v) in [("cacert", &p.cacert), ("cert", &p.cert), ("key", &p.key)] {
                    if let Some(v) = v {
                        absolute(f, v, &mut problems);
                    }
                }
                absolute("tempDir", &p.temp_dir, &mut problems);
            }
            "restore" => {
                let p: RestoreParams = sdk::params(req)?;
                absolute("dataDir", &p.data_dir, &mut problems);
                absolute("tempDir", &p.temp_dir, &mut problems);
                if !req.input_artifacts.iter().any(|a| a.key == SNAPSHOT_KEY) {
                    problems.push("the restore point has no snapshot.db artifact".into());
                }
            }
            "delete" => {
                sdk::params::<DeleteParams>(req)?;
            }
            other => problems.push(format!(
                "unknown action {other:?}: this plugin has backup, restore and delete"
            )),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
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

/// A private temporary directory, removed when dropped.
struct TempDir(String);

impl TempDir {
    fn new(parent: &str) -> Result<TempDir, Error> {
        let out = Cmd::new(["mktemp", "-d"])
            .arg(format!(
                "{}/coffer-etcd.XXXXXXXX",
                parent.trim_end_matches('/')
            ))
            .run(None, 4096)?;
        let dir = String::from_utf8_lossy(&out).trim().to_string();
        if !dir.starts_with('/') {
            return Err(sdk::internal(format!("mktemp printed {dir:?}")));
        }
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = Cmd::new(["rm", "-rf", &self.0]).run(None, 0) {
            log::warn(
                "could not remove a temporary directory",
                &[("dir", &self.0), ("error", &sdk::error_text(&e))],
            );
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotStatus {
    hash: u64,
    revision: i64,
    total_key: i64,
    total_size: i64,
}

fn backup(req: &ActionRequest) -> Result<ActionOutput, Error> {
    let p: BackupParams = sdk::params(req).map_err(|e| sdk::invalid(e.join("; ")))?;
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;
    // A member that is down or refuses the credentials makes `snapshot save` wait for its
    // whole timeout and then print a stack trace; a health check says why, in seconds.
    etcdctl(&p, pw.as_ref(), "5s")
        .args(["endpoint", "health"])
        .run(None, 64 << 10)
        .map_err(|e| {
            sdk::internal(format!(
                "etcd at {} is not healthy (down, unreachable, or refusing the credentials): {}",
                p.endpoint,
                sdk::error_text(&e)
            ))
        })?;
    let dir = TempDir::new(&p.temp_dir)?;
    let file = format!("{}/snapshot.db", dir.0);
    etcdctl(&p, pw.as_ref(), "30m")
        .args(["snapshot", "save", &file])
        .run(None, 64 << 10)?;
    let status = snapshot_status(&file)?;
    log::info(
        "snapshot saved",
        &[
            ("revision", &status.revision.to_string()),
            ("keys", &status.total_key.to_string()),
        ],
    );
    let info = Cmd::new(["cat", &file]).stdout_to(&store, SNAPSHOT_KEY, &sdk::compressed())?;
    let mut a = sdk::artifact("snapshot", LOCATION, &info);
    for (k, v) in [
        ("format", "etcd-snapshot-v3".to_string()),
        ("revision", status.revision.to_string()),
        ("totalKey", status.total_key.to_string()),
        ("totalSize", status.total_size.to_string()),
        ("hash", status.hash.to_string()),
    ] {
        a.metadata.push((k.into(), v));
    }
    Ok(ActionOutput {
        artifacts: vec![a],
        outputs: vec![
            ("revision".into(), status.revision.to_string()),
            ("keys".into(), status.total_key.to_string()),
        ],
    })
}

/// etcdctl with the connection flags and a timeout for the whole command; the password (if
/// any) through the environment.
fn etcdctl<'a>(p: &BackupParams, pw: Option<&'a secrets::Secret>, timeout: &str) -> Cmd<'a> {
    let mut cmd = Cmd::new(["etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", p.endpoint))
        .arg("--dial-timeout=5s")
        .arg(format!("--command-timeout={timeout}"));
    if let Some(u) = &p.user {
        cmd = cmd.arg(format!("--user={u}"));
    }
    for (flag, v) in [("cacert", &p.cacert), ("cert", &p.cert), ("key", &p.key)] {
        if let Some(v) = v {
            cmd = cmd.arg(format!("--{flag}={v}"));
        }
    }
    cmd.secret_env("ETCDCTL_PASSWORD", pw)
}

fn snapshot_status(file: &str) -> Result<SnapshotStatus, Error> {
    let out = Cmd::new(["etcdctl", "snapshot", "status", file, "-w", "json"])
        .env("ETCDCTL_API", "3")
        .run(None, 64 << 10)?;
    serde_json::from_slice(&out).map_err(|e| {
        sdk::internal(format!(
            "etcdctl snapshot status printed something unexpected ({e}): {}",
            String::from_utf8_lossy(&out)
        ))
    })
}

fn restore(req: &ActionRequest) -> Result<ActionOutput, Error> {
    let p: RestoreParams = sdk::params(req).map_err(|e| sdk::invalid(e.join("; ")))?;
    if Cmd::new(["test", "-e", &p.data_dir]).run(None, 0).is_ok() {
        return Err(sdk::invalid(format!(
            "params.dataDir: {} exists; etcd restores into a new directory (stop etcd and move the old one away, or pick another)",
            p.data_dir
        )));
    }
    let store = location::open(LOCATION)?;
    let dir = TempDir::new(&p.temp_dir)?;
    let file = format!("{}/snapshot.db", dir.0);
    Cmd::new(["dd", "status=none", "bs=1M"])
        .arg(format!("of={file}"))
        .stdin_from(&store, SNAPSHOT_KEY)?;
    let status = snapshot_status(&file)?;
    let mut cmd = Cmd::new(["etcdctl", "snapshot", "restore", &file])
        .env("ETCDCTL_API", "3")
        .arg(format!("--data-dir={}", p.data_dir));
    for (flag, v) in [
        ("name", &p.name),
        ("initial-cluster", &p.initial_cluster),
        ("initial-cluster-token", &p.initial_cluster_token),
        (
            "initial-advertise-peer-urls",
            &p.initial_advertise_peer_urls,
        ),
    ] {
        if let Some(v) = v {
            cmd = cmd.arg(format!("--{flag}={v}"));
        }
    }
    cmd.run(None, 64 << 10)?;
    log::info(
        "snapshot restored",
        &[
            ("dataDir", &p.data_dir),
            ("revision", &status.revision.to_string()),
        ],
    );
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![
            ("dataDir".into(), p.data_dir.clone()),
            ("revision".into(), status.revision.to_string()),
        ],
    })
}
