//! postgres-consistent: consistent PostgreSQL backups of the cluster's volumes.
//!
//! backup  = `CHECKPOINT` (so a restore replays little WAL), the WAL position and server
//!           version read, then one cut of the data directory — with its `pg_wal`, or of
//!           every volume the cluster's files are on, at one instant
//!           (`snapshot.create-group`) — while the server runs. A crash-consistent copy of a
//!           cluster whose WAL is in the copy is correct: PostgreSQL recovers it exactly as
//!           after a crash at the cut. Then each snapshot is exported as a tar into the
//!           location and deleted (`keepSnapshots` keeps it).
//! restore = each exported volume is unpacked into a new directory (params `volumes:
//!           {NAME: NEWPATH}`); start PostgreSQL on it and it recovers.
//! delete  = remove the restore point's objects.
//!
//! Nothing is paused: the cut is atomic on the storage, so no quiesce window is opened.
//! Volumes on storage without group snapshots (several btrfs subvolumes) are refused
//! rather than cut one by one, which would not be one instant.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Cmd, Error, location, log, secrets, snapshot,
};
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

const LOCATION: &str = "default";
/// Left out of the copy as `pg_basebackup` leaves them out: the running server's lock and
/// options files. A restored directory holding the live server's postmaster.pid would be
/// refused while that server runs on the same machine.
const EXCLUDE: &[&str] = &["postmaster.pid", "postmaster.opts"];

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// The database to connect to for CHECKPOINT (as PGUSER, a superuser or a member of
    /// pg_checkpoint).
    #[serde(default = "postgres")]
    pub database: String,
    /// The Workload's volumes holding the cluster: its data directory (with pg_wal), and
    /// any other volume its files are on (a separate pg_wal, tablespaces), cut at one instant.
    #[serde(default = "data_volume")]
    pub volumes: Vec<String>,
    /// Keep the snapshots after they are exported (default: delete them).
    #[serde(default)]
    pub keep_snapshots: bool,
}

fn postgres() -> String {
    "postgres".into()
}

fn data_volume() -> Vec<String> {
    vec!["data".into()]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// Where each volume of the restore point goes: a new directory (absent or empty), e.g.
    /// `{data: /srv/pg-restored}`. Start PostgreSQL on it.
    pub volumes: BTreeMap<String, String>,
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if p.database.is_empty() || p.database.starts_with('-') {
            problems.push(format!(
                "params.database: {:?} is not a database name",
                p.database
            ));
        }
        if p.volumes.is_empty() {
            problems.push("params.volumes: name at least one of the Workload's volumes".into());
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
        sdk::checked(sdk::volume::check_targets(&p.volumes, &req.input_artifacts))
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        restore(p, req)
    }
}

/// One line of output of `sql`, run by psql in `database`.
fn query(database: &str, pw: Option<&secrets::Secret>, sql: &str) -> Result<String, Error> {
    let out = Cmd::new([
        "psql",
        "-X",
        "--no-password",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .arg(format!("--dbname={database}"))
    .args(["-c", sql])
    .secret_env("PGPASSWORD", pw)
    .run(None, 4096)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;
    let version = query(&p.database, pw.as_ref(), "SHOW server_version_num")?;
    // Dirty buffers written now, not replayed by every restore.
    query(&p.database, pw.as_ref(), "CHECKPOINT")?;
    let lsn = query(&p.database, pw.as_ref(), "SELECT pg_current_wal_lsn()")?;
    let volumes: Vec<snapshot::VolumeRef> = p
        .volumes
        .iter()
        .map(|v| snapshot::VolumeRef {
            namespace: None,
            name: v.clone(),
        })
        .collect();
    let cuts = snapshot::create_group(&volumes, None, &[])?;
    log::info(
        "the cluster is cut; exporting",
        &[("lsn", &lsn), ("volumes", &p.volumes.join(","))],
    );
    let exported = sdk::volume::export_cuts(
        &store,
        &cuts,
        EXCLUDE,
        &[("lsnBeforeCut", &lsn), ("serverVersionNum", &version)],
    );
    if !p.keep_snapshots || exported.is_err() {
        sdk::volume::delete_cuts(&cuts);
    }
    Ok(ActionOutput {
        artifacts: exported?,
        outputs: vec![
            ("lsn".into(), lsn),
            ("serverVersion".into(), version),
            ("volumes".into(), p.volumes.join(",")),
            (
                "cutAt".into(),
                cuts.first()
                    .and_then(|c| c.cut_at.clone())
                    .unwrap_or_default(),
            ),
        ],
    })
}

fn restore(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let store = location::open(LOCATION)?;
    let restored = sdk::volume::restore_volumes(&store, &req.input_artifacts, &p.volumes, None)?;
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![("restored".into(), restored.join(","))],
    })
}
