//! mysql-consistent: application-consistent MariaDB backups of the server's data volumes.
//!
//! backup  = in one held `mariadb` session: `FLUSH TABLES WITH READ LOCK` (commits wait; the
//!           quiesce window opens), `SHOW MASTER STATUS` and `@@gtid_binlog_pos` (the binlog
//!           position of exactly this cut), one cut of every volume
//!           (`snapshot.create-group`, which returns once the copy is cut), then
//!           `UNLOCK TABLES` at once (the window closes). Only then, with the server
//!           running again, each snapshot is exported as a tar into the location and,
//!           unless `keepSnapshots`, deleted: the lock lasts as long as the cut, never as
//!           long as the export.
//! restore = each exported volume is unpacked into a new directory (params `volumes:
//!           {NAME: NEWPATH}`); a server started on it recovers InnoDB as after a crash at
//!           the cut, and its binlog ends at the recorded position.
//! delete  = remove the restore point's objects.
//!
//! Nothing stays locked when something goes wrong: the lock belongs to the session, a
//! process of the host's that is killed with the action (and whose stdin closes when the
//! host dies, which ends it); the host also ends an overlong window (`spec.limits.quiesce`).

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Cmd, Error, location, log, secrets, snapshot,
};
use serde::Deserialize;
use std::collections::BTreeMap;

use sdk::session::Session;

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

const LOCATION: &str = "default";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// Server host (with port, for TCP); default: the client's (MYSQL_HOST, else the local
    /// socket).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Default: the client's (the OS user). The password is the `password` secret.
    pub user: Option<String>,
    /// The Workload's volumes holding the server's files (data directory, and binlogs or
    /// InnoDB logs when they live elsewhere), cut at one instant.
    #[serde(default = "data_volume")]
    pub volumes: Vec<String>,
    /// Keep the snapshots after they are exported (default: delete them).
    #[serde(default)]
    pub keep_snapshots: bool,
}

fn data_volume() -> Vec<String> {
    vec!["data".into()]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// Where each volume of the restore point goes: a new directory per volume name
    /// (absent or empty), e.g. `{data: /srv/mariadb-restored}`. Start a server on it.
    pub volumes: BTreeMap<String, String>,
}

fn check_conn(p: &BackupParams, problems: &mut Vec<String>) {
    if let Some(h) = &p.host
        && (h.is_empty() || h.starts_with('-'))
    {
        problems.push(format!("params.host: {h:?} is not a host name"));
    }
    if p.port == Some(0) {
        problems.push("params.port: must be between 1 and 65535".into());
    }
    if let Some(u) = &p.user
        && (u.is_empty() || u.starts_with('-'))
    {
        problems.push(format!("params.user: {u:?} is not a user name"));
    }
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        check_conn(p, &mut problems);
        if p.volumes.is_empty() {
            problems.push("params.volumes: name at least one of the Workload's volumes".into());
        }
        for v in &p.volumes {
            if v.is_empty() || v.contains('/') {
                problems.push(format!(
                    "params.volumes: {v:?} is not a volume name (a key of the Workload's spec.volumes)"
                ));
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
        let mut problems = sdk::volume::check_targets(&p.volumes, &req.input_artifacts);
        for (v, path) in &p.volumes {
            if !path.starts_with('/') {
                problems.push(format!(
                    "params.volumes.{v}: {path:?} is not an absolute path"
                ));
            }
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        restore(p, req)
    }
}

/// `mariadb --no-defaults` with the connection flags and the password.
fn client<'a>(p: &BackupParams, pw: Option<&'a secrets::Secret>) -> Cmd<'a> {
    let mut cmd = Cmd::new(["mariadb", "--no-defaults"]);
    if let Some(h) = &p.host {
        cmd = cmd.arg(format!("--host={h}"));
    }
    if let Some(port) = p.port {
        cmd = cmd.arg(format!("--port={port}"));
    }
    if let Some(u) = &p.user {
        cmd = cmd.arg(format!("--user={u}"));
    }
    cmd.secret_env("MYSQL_PWD", pw)
}

/// Where the binlog stood at the cut.
#[derive(Default)]
struct Position {
    file: String,
    offset: String,
    gtid: String,
}

/// Lock, read the position, cut, unlock: the quiesce window. The cuts and the position.
fn cut_locked(
    s: &mut Session,
    volumes: &[snapshot::VolumeRef],
) -> Result<(Vec<snapshot::SnapshotInfo>, Position, u64), Error> {
    let window = sdk::quiesce::Window::begin()?;
    s.query("FLUSH TABLES WITH READ LOCK;")?;
    let mut pos = Position::default();
    // One line when binary logging is on: file, position, do-db, ignore-db.
    if let Some(line) = s.query("SHOW MASTER STATUS;")?.first() {
        let f: Vec<&str> = line.split('\t').collect();
        pos.file = f.first().unwrap_or(&"").to_string();
        pos.offset = f.get(1).unwrap_or(&"").to_string();
    }
    pos.gtid = s
        .query("SELECT @@GLOBAL.gtid_binlog_pos;")?
        .into_iter()
        .next()
        .unwrap_or_default();
    let cuts = snapshot::create_group(volumes, None, &[])?;
    let unlocked = s.query("UNLOCK TABLES;").and_then(|_| window.end());
    match unlocked {
        Ok(ms) => Ok((cuts, pos, ms)),
        Err(e) => {
            // No restore point will name these cuts.
            for c in &cuts {
                let _ = snapshot::delete(&c.snapshot);
            }
            Err(e)
        }
    }
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;
    let volumes = sdk::volume::refs(&p.volumes);
    let mut s = Session::open(
        client(&p, pw.as_ref()).args(["--batch", "--skip-column-names", "--unbuffered"]),
        "mariadb",
    )?;
    // A failure inside the window drops the session with the error: the client is killed
    // and the server releases the lock.
    let (cuts, pos, window_ms) = cut_locked(&mut s, &volumes)?;
    if let Err(e) = s.close() {
        // The lock is released already (UNLOCK TABLES answered).
        log::warn(
            "the session ended badly",
            &[("error", &sdk::error_text(&e))],
        );
    }
    log::info(
        "the volumes are cut and the server runs again; exporting",
        &[
            ("windowMs", &window_ms.to_string()),
            ("binlogFile", &pos.file),
            ("binlogPosition", &pos.offset),
        ],
    );
    let exported = sdk::volume::export_cuts(
        &store,
        &cuts,
        &[],
        &[
            ("binlogFile", &pos.file),
            ("binlogPosition", &pos.offset),
            ("gtidBinlogPos", &pos.gtid),
        ],
    );
    // The snapshots go once exported, and also when the export failed: the restore point
    // is not recorded then, so nothing would ever name them again.
    if !p.keep_snapshots || exported.is_err() {
        sdk::volume::delete_cuts(&cuts);
    }
    let artifacts = exported?;
    let mut outputs = vec![
        ("windowMs".into(), window_ms.to_string()),
        ("binlogFile".into(), pos.file),
        ("binlogPosition".into(), pos.offset),
        ("gtidBinlogPos".into(), pos.gtid),
        ("volumes".into(), p.volumes.join(",")),
    ];
    if p.keep_snapshots {
        let names: Vec<String> = cuts.iter().map(|c| c.snapshot.name.clone()).collect();
        outputs.push(("snapshots".into(), names.join(",")));
    }
    Ok(ActionOutput { artifacts, outputs })
}

fn restore(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let store = location::open(LOCATION)?;
    let restored =
        sdk::volume::restore_volumes(&store, &req.input_artifacts, &p.volumes, None, &[])?;
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![("restored".into(), restored.join(","))],
    })
}
