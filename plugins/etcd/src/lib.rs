//! etcd: etcd v3 snapshots.
//!
//! backup  = `etcdctl snapshot save` into the action's scratch directory (etcdctl 3.4 only
//!           writes files), `etcdctl snapshot status` for the revision, key count and hash,
//!           then the host streams the file into the location; the host removes the
//!           directory when the action ends, whatever happens.
//! restore = the host streams the snapshot into the scratch directory and `etcdctl snapshot
//!           restore` builds a new data directory from it, checking its integrity hash.
//!           Replacing a running member's data is the operator's step: stop etcd, start it on
//!           the new directory.
//! delete  = remove the restore point's object.
//!
//! The password reaches etcdctl as ETCDCTL_PASSWORD through a secret handle: never in argv.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Cmd, Error, Scratch, location, log, secrets,
};
use serde::Deserialize;

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

const LOCATION: &str = "default";
const SNAPSHOT_KEY: &str = "snapshot.db";
const SNAPSHOT_FILE: &str = "snapshot.db";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// One endpoint: a snapshot is taken from a single member. Default: the Workload's
    /// ETCDCTL_ENDPOINTS, else etcdctl's own (127.0.0.1:2379). With a password, the
    /// Workload must pin it (ETCDCTL_ENDPOINTS in spec.env).
    pub endpoint: Option<String>,
    /// User for etcd auth; the password is the workload's `password` secret.
    pub user: Option<String>,
    /// TLS: the CA certificate, client certificate and key (absolute paths).
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
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
}

/// Absolute paths only: the process runs wherever the workload does.
fn absolute(field: &str, v: &str, problems: &mut Vec<String>) {
    if !v.starts_with('/') {
        problems.push(format!("params.{field}: {v:?} must be an absolute path"));
    }
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(e) = &p.endpoint
            && (e.is_empty() || e.contains(',') || e.starts_with('-'))
        {
            problems.push(format!(
                "params.endpoint: {e:?} must be one endpoint (a snapshot is taken from one member)"
            ));
        }
        for (f, v) in [("cacert", &p.cacert), ("cert", &p.cert), ("key", &p.key)] {
            if let Some(v) = v {
                absolute(f, v, &mut problems);
            }
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
        absolute("dataDir", &p.data_dir, &mut problems);
        if !req.input_artifacts.iter().any(|a| a.key == SNAPSHOT_KEY) {
            problems.push("the restore point has no snapshot.db artifact".into());
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        restore(p)
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

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
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
                p.endpoint.as_deref().unwrap_or("the workload's endpoint"),
                sdk::error_text(&e)
            ))
        })?;
    let scratch = Scratch::new()?;
    let file = scratch.path(SNAPSHOT_FILE);
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
    let info = scratch.put(SNAPSHOT_FILE, &store, SNAPSHOT_KEY, &sdk::compressed())?;
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
        .arg("--dial-timeout=5s")
        .arg(format!("--command-timeout={timeout}"));
    if let Some(e) = &p.endpoint {
        cmd = cmd.arg(format!("--endpoints={e}"));
    }
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

fn restore(p: RestoreParams) -> Result<ActionOutput, Error> {
    let store = location::open(LOCATION)?;
    let scratch = Scratch::new()?;
    scratch.get(&store, SNAPSHOT_KEY, SNAPSHOT_FILE)?;
    let file = scratch.path(SNAPSHOT_FILE);
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
    cmd.run(None, 64 << 10).map_err(|e| {
        let text = sdk::error_text(&e);
        if text.contains("exists") {
            sdk::invalid(format!(
                "params.dataDir: {} exists; etcd restores into a new directory (stop etcd and move the old one away, or pick another)",
                p.data_dir
            ))
        } else {
            e
        }
    })?;
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
