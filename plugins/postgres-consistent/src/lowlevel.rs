//! Mode `lowlevel`: PostgreSQL's own online backup around the cuts, for clusters that
//! archive their WAL.
//!
//! In one held `psql` session: `pg_backup_start` (a checkpoint; full-page writes forced),
//! the cuts, then `pg_backup_stop` at once, which waits until the WAL the copy needs is
//! archived and returns the backup's label file (and tablespace map). PostgreSQL's docs
//! call the label vital: it tells recovery where to start and that it must reach the
//! backup's end before the cluster may open. It is stored as an artifact and written back
//! into the restored data directory with `recovery.signal` and the `restore_command` that
//! fetches the archived WAL (appended to `postgresql.auto.conf`, as pgBackRest does).
//!
//! The backup belongs to the session: if the plugin or coffer dies in between, the client
//! is killed and the server ends the backup itself, so nothing is left to clean up.

use coffer_plugin_sdk::location::{Compression, PutOptions, Store};
use coffer_plugin_sdk::session::Session;
use coffer_plugin_sdk::snapshot::{self, SnapshotInfo, VolumeRef};
use coffer_plugin_sdk::volume::AddedFile;
use coffer_plugin_sdk::{self as sdk, Artifact, Error, log, secrets};

/// Metadata `kind` of the label's artifact (and of the tablespace map's).
pub const LABEL_KIND: &str = "pg-backup-label";
pub const MAP_KIND: &str = "pg-tablespace-map";
/// The most a label or map may be: they are a few lines.
const SMALL: u64 = 1 << 20;

/// What `pg_backup_stop` returned.
pub struct Stopped {
    pub start_lsn: String,
    pub stop_lsn: String,
    label: Vec<u8>,
    map: Vec<u8>,
}

/// `pg_backup_start`, one cut per volume (the label makes copies taken one after another
/// consistent, so no group is needed), `pg_backup_stop`.
pub fn cut(
    database: &str,
    pw: Option<&secrets::Secret>,
    version: u32,
    volumes: &[VolumeRef],
) -> Result<(Vec<SnapshotInfo>, Stopped), Error> {
    let archive_mode = super::query(database, pw, "SHOW archive_mode")?;
    if archive_mode == "off" {
        return Err(sdk::invalid(
            "mode lowlevel needs WAL archiving, and archive_mode is off: set archive_mode = on \
             and an archive_command on the server (a restart), or back up with mode atomic",
        ));
    }
    let (start, stop) = if version >= 150_000 {
        (
            "SELECT pg_backup_start('coffer', true);",
            "pg_backup_stop(true)",
        )
    } else {
        (
            "SELECT pg_start_backup('coffer', true, false);",
            "pg_stop_backup(false, true)",
        )
    };
    let mut s = Session::open(super::psql(database, pw), "postgresql")?;
    let start_lsn = one_line(s.query(start)?, "pg_backup_start")?;
    log::info("the base backup has started", &[("startLsn", &start_lsn)]);
    let mut cuts = Vec::new();
    for v in volumes {
        match snapshot::create(v, None, &[]) {
            Ok(c) => cuts.push(c),
            Err(e) => {
                // The session ends with the error, and the backup with it.
                sdk::volume::delete_cuts(&cuts);
                return Err(e);
            }
        }
    }
    let row = s.query(&format!(
        "SELECT lsn, encode(convert_to(labelfile, 'UTF8'), 'hex'), \
         encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') FROM {stop};"
    ));
    let stopped = row.and_then(|r| {
        let line = one_line(r, "pg_backup_stop")?;
        let f: Vec<&str> = line.split('|').collect();
        match f.as_slice() {
            [lsn, label, map] => Ok(Stopped {
                start_lsn: start_lsn.clone(),
                stop_lsn: lsn.to_string(),
                label: unhex(label)?,
                map: unhex(map)?,
            }),
            _ => Err(sdk::internal(format!(
                "pg_backup_stop answered {line:?}, not lsn|label|map"
            ))),
        }
    });
    let stopped = match stopped {
        Ok(s) => s,
        Err(e) => {
            sdk::volume::delete_cuts(&cuts);
            return Err(e);
        }
    };
    if let Err(e) = s.close() {
        log::warn(
            "the session ended badly",
            &[("error", &sdk::error_text(&e))],
        );
    }
    if stopped.label.is_empty() {
        sdk::volume::delete_cuts(&cuts);
        return Err(sdk::internal("pg_backup_stop returned an empty label file"));
    }
    Ok((cuts, stopped))
}

fn one_line(lines: Vec<String>, what: &str) -> Result<String, Error> {
    match lines.as_slice() {
        [one] => Ok(one.trim().to_string()),
        _ => Err(sdk::internal(format!(
            "{what} answered {} lines, not one: {lines:?}",
            lines.len()
        ))),
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, Error> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(sdk::internal(format!("{s:?} is not hex"))),
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| match p {
            [h, l] => Ok(digit(*h)? << 4 | digit(*l)?),
            _ => Err(sdk::internal("an odd number of hex digits")),
        })
        .collect()
}

/// Store the label file (and a non-empty tablespace map) as artifacts, to go into
/// `volume` on restore.
pub fn store(store: &Store, s: &Stopped, volume: &str) -> Result<Vec<Artifact>, Error> {
    let mut artifacts = Vec::new();
    for (name, kind, key, data) in [
        ("backup-label", LABEL_KIND, "backup_label", &s.label),
        ("tablespace-map", MAP_KIND, "tablespace_map", &s.map),
    ] {
        if data.is_empty() {
            continue;
        }
        let opts = PutOptions {
            compression: Compression::None,
            content_type: Some("text/plain".into()),
            metadata: vec![],
        };
        let info = store.put_bytes(key, data, &opts)?;
        let mut a = sdk::artifact(name, "default", &info);
        a.metadata = [
            ("kind", kind),
            ("volume", volume),
            ("startLsn", s.start_lsn.as_str()),
            ("stopLsn", s.stop_lsn.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        artifacts.push(a);
    }
    Ok(artifacts)
}

/// The restore point's label artifact, if it was made in mode lowlevel.
pub fn label_artifact(artifacts: &[Artifact]) -> Option<&Artifact> {
    artifacts
        .iter()
        .find(|a| sdk::meta(a, "kind") == Some(LABEL_KIND))
}

/// Problems with a `restore_command` for postgresql.auto.conf.
pub fn check_restore_command(cmd: &str) -> Option<String> {
    if cmd.chars().any(char::is_control) {
        Some("params.restoreCommand: one line, no control characters".into())
    } else if !cmd.contains("%f") || !cmd.contains("%p") {
        Some(format!(
            "params.restoreCommand: {cmd:?} must copy the archived file %f to %p, \
             e.g. `cp /var/lib/postgresql/archive/%f %p`"
        ))
    } else {
        None
    }
}

/// The files that make the restored data directory start as this base backup: the label
/// and map read back from the location, `recovery.signal`, and `restore_command`.
pub fn files(
    store: &Store,
    artifacts: &[Artifact],
    restore_command: &str,
) -> Result<Vec<AddedFile>, Error> {
    let Some(label) = label_artifact(artifacts) else {
        return Ok(vec![]);
    };
    let volume = sdk::meta(label, "volume").unwrap_or("data").to_string();
    let mut files = Vec::new();
    for a in artifacts.iter().filter(|a| {
        let kind = sdk::meta(a, "kind");
        kind == Some(LABEL_KIND) || kind == Some(MAP_KIND)
    }) {
        let data = store.get_bytes(&a.key, SMALL).map_err(|e| {
            sdk::invalid(format!(
                "the restore point's {} ({}) cannot be read: {}; a base backup made in mode \
                 lowlevel cannot be restored without it",
                a.key,
                a.name,
                sdk::error_text(&e)
            ))
        })?;
        files.push(AddedFile {
            volume: volume.clone(),
            path: a.key.clone(),
            data,
            append: false,
        });
    }
    let quoted = restore_command.replace('\\', "\\\\").replace('\'', "''");
    files.push(AddedFile {
        volume: volume.clone(),
        path: "recovery.signal".into(),
        data: vec![],
        append: false,
    });
    files.push(AddedFile {
        volume,
        path: "postgresql.auto.conf".into(),
        data: format!(
            "\n# Added by coffer's restore: WAL from the archive.\nrestore_command = '{quoted}'\n"
        )
        .into_bytes(),
        append: true,
    });
    Ok(files)
}
