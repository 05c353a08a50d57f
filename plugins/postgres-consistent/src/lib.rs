//! postgres-consistent: consistent PostgreSQL backups of the cluster's volumes.
//!
//! backup  = mode `atomic` (default): `CHECKPOINT` (so a restore replays little WAL), the
//!           WAL position and server version read, then one cut of the data directory —
//!           with its `pg_wal`, or of every volume the cluster's files are on, at one
//!           instant (`snapshot.create-group`) — while the server runs. A crash-consistent
//!           copy of a cluster whose WAL is in the copy is correct: PostgreSQL recovers it
//!           exactly as after a crash at the cut.
//!           Mode `lowlevel` (WAL archiving on): PostgreSQL's online base backup around the
//!           cuts, its label file kept (see `lowlevel`).
//!           Then each snapshot is exported as a tar into the location and deleted
//!           (`keepSnapshots` keeps it).
//! restore = each exported volume is unpacked into a new directory (params `volumes:
//!           {NAME: NEWPATH}`), with, for a lowlevel backup, its label, `recovery.signal`
//!           and `restore_command`; start PostgreSQL on it and it recovers.
//! delete  = remove the restore point's objects.
//!
//! Nothing is paused: the cut is atomic on the storage, so no quiesce window is opened.
//! In mode atomic, volumes on storage without group snapshots (several btrfs subvolumes)
//! are refused rather than cut one by one, which would not be one instant.

mod lowlevel;

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
    /// `atomic`: one crash-consistent cut, no WAL archive needed. `lowlevel`: PostgreSQL's
    /// online base backup (`pg_backup_start` / `pg_backup_stop`) around the cuts, its label
    /// file stored; needs WAL archiving, and a restore needs the archive
    /// (`restoreCommand`). The first of `volumes` is then the data directory.
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Atomic,
    Lowlevel,
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
    /// For a backup made in mode lowlevel: the command that fetches archived WAL, e.g.
    /// `cp /var/lib/postgresql/archive/%f %p`. Written to the copy's postgresql.auto.conf
    /// with recovery.signal: the copy replays the archive to its end and is promoted.
    pub restore_command: Option<String>,
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
        let mut problems = sdk::volume::check_targets(&p.volumes, &req.input_artifacts);
        let lowlevel = lowlevel::label_artifact(&req.input_artifacts).is_some();
        match &p.restore_command {
            None if lowlevel => problems.push(
                "params.restoreCommand: this restore point is a base backup made in mode \
                 lowlevel; name the command that fetches its archived WAL, e.g. \
                 `cp /var/lib/postgresql/archive/%f %p`"
                    .into(),
            ),
            Some(_) if !lowlevel => problems.push(
                "params.restoreCommand: this restore point was made in mode atomic and \
                 recovers from its own WAL; leave it out"
                    .into(),
            ),
            Some(c) => problems.extend(lowlevel::check_restore_command(c)),
            None => {}
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        restore(p, req)
    }
}

/// psql connected to `database`, quiet, bare rows (`-A -t`), stopping at the first error.
pub(crate) fn psql<'a>(database: &str, pw: Option<&'a secrets::Secret>) -> Cmd<'a> {
    Cmd::new([
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
    .secret_env("PGPASSWORD", pw)
}

/// The output of `sql`, run by psql in `database`, trimmed.
pub(crate) fn query(
    database: &str,
    pw: Option<&secrets::Secret>,
    sql: &str,
) -> Result<String, Error> {
    let out = psql(database, pw).args(["-c", sql]).run(None, 4096)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;
    let version = query(&p.database, pw.as_ref(), "SHOW server_version_num")?;
    // Dirty buffers written now, not replayed by every restore.
    query(&p.database, pw.as_ref(), "CHECKPOINT")?;
    let volumes = sdk::volume::refs(&p.volumes);
    let (cuts, lsn, mut artifacts, mode_outputs) = match p.mode {
        Mode::Atomic => {
            let lsn = query(&p.database, pw.as_ref(), "SELECT pg_current_wal_lsn()")?;
            let cuts = snapshot::create_group(&volumes, None, &[])?;
            (cuts, lsn, vec![], vec![])
        }
        Mode::Lowlevel => {
            let number: u32 = version.parse().map_err(|_| {
                sdk::internal(format!("server_version_num {version:?} is not a number"))
            })?;
            let (cuts, stopped) = lowlevel::cut(&p.database, pw.as_ref(), number, &volumes)?;
            let stored = lowlevel::store(&store, &stopped, &p.volumes[0]);
            let artifacts = match stored {
                Ok(a) => a,
                Err(e) => {
                    sdk::volume::delete_cuts(&cuts);
                    return Err(e);
                }
            };
            let outputs = vec![
                ("startLsn".to_string(), stopped.start_lsn.clone()),
                ("stopLsn".to_string(), stopped.stop_lsn.clone()),
            ];
            (cuts, stopped.start_lsn, artifacts, outputs)
        }
    };
    let mode = format!("{:?}", p.mode).to_lowercase();
    log::info(
        "the cluster is cut; exporting",
        &[
            ("lsn", &lsn),
            ("mode", &mode),
            ("volumes", &p.volumes.join(",")),
        ],
    );
    let exported = sdk::volume::export_cuts(
        &store,
        &cuts,
        EXCLUDE,
        &[
            ("lsnBeforeCut", &lsn),
            ("serverVersionNum", &version),
            ("mode", &mode),
        ],
    );
    if !p.keep_snapshots || exported.is_err() {
        sdk::volume::delete_cuts(&cuts);
    }
    artifacts.extend(exported?);
    let mut outputs = vec![
        ("lsn".into(), lsn),
        ("mode".into(), mode),
        ("serverVersion".into(), version),
        ("volumes".into(), p.volumes.join(",")),
        (
            "cutAt".into(),
            cuts.first()
                .and_then(|c| c.cut_at.clone())
                .unwrap_or_default(),
        ),
    ];
    outputs.extend(mode_outputs);
    Ok(ActionOutput { artifacts, outputs })
}

fn restore(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let store = location::open(LOCATION)?;
    let added = lowlevel::files(
        &store,
        &req.input_artifacts,
        p.restore_command.as_deref().unwrap_or_default(),
    )?;
    let restored =
        sdk::volume::restore_volumes(&store, &req.input_artifacts, &p.volumes, None, &added)?;
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![("restored".into(), restored.join(","))],
    })
}
