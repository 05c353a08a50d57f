//! postgres-consistent against a real PostgreSQL 15 whose data directory is a btrfs
//! subvolume, while a writer commits one row at a time: the cut, taken with the server
//! running, restores into a cluster that recovers, passes pg_amcheck, and holds exactly a
//! prefix of the committed rows — every row up to some point, none after it, none torn.
//! In mode lowlevel (WAL archived), the copy starts from the base backup's label file,
//! written back by the restore, and replays the archive.

use super::cli;
use coffer_tests::btrfs::Btrfs;
use coffer_tests::cli::Cli;
use coffer_tests::postgres::{PGBIN, Postgres};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// A btrfs loop mount with subvolume `pgdata` that `postgres` can reach.
fn volume() -> (Btrfs, std::path::PathBuf) {
    let fs = Btrfs::new(512);
    // `postgres` must reach the data directory through the test's private temp dir.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = fs.subvolume("pgdata");
    (fs, data)
}

/// Table `w` with rows 1..=20000, and a writer committing rows 20001..=21500 one at a
/// time through one session.
fn writer(pg: &Postgres) -> (Child, JoinHandle<()>) {
    pg.psql(
        "postgres",
        "CREATE TABLE w (n int PRIMARY KEY, pad text NOT NULL); \
         CREATE INDEX w_pad ON w (pad); \
         INSERT INTO w SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    )
    .unwrap();
    let mut writer = Command::new(format!("{PGBIN}/psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"])
        .envs(pg.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for n in 20_001..=21_500 {
            if writeln!(stdin, "INSERT INTO w VALUES ({n}, md5('{n}'));").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (writer, feeder)
}

/// Workload `pg` on postgres-consistent with volume `data`.
fn workload(c: &Cli, pg: &Postgres, data: &Path) {
    let env: Vec<String> = pg
        .env()
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: pg}}\nspec:\n  blueprint: postgres-consistent\n  env: {{{}}}\n  volumes: {{data: {}}}\n",
        env.join(", "),
        data.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
}

/// pg_amcheck passes on `copy`, and `w` holds rows 1..=k, each whole, k between the bulk
/// load and `committed`; k.
fn assert_sound_prefix(copy: &Postgres, committed: u32) -> u32 {
    let amcheck = Command::new(format!("{PGBIN}/pg_amcheck"))
        .args(["--all", "--heapallindexed", "--install-missing"])
        .envs(copy.env())
        .output()
        .unwrap();
    assert!(
        amcheck.status.success(),
        "pg_amcheck: {}{}",
        String::from_utf8_lossy(&amcheck.stdout),
        String::from_utf8_lossy(&amcheck.stderr)
    );
    let got = copy
        .psql(
            "postgres",
            "SELECT count(*), min(n), max(n), bool_and(pad = md5(n::text)) FROM w",
        )
        .unwrap();
    let f: Vec<&str> = got.split('|').collect();
    let (count, min, max): (u32, u32, u32) = (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    );
    assert_eq!((min, count), (1, max), "not a prefix: {got}");
    assert_eq!(f[3], "t", "a torn row: {got}");
    assert!(
        (20_000..=committed).contains(&max),
        "{max} rows restored of {committed} committed"
    );
    max
}

fn committed(pg: &Postgres) -> u32 {
    pg.psql("postgres", "SELECT count(*) FROM w")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_running_cluster_is_cut_and_restores_to_a_prefix_of_its_commits() {
    let (fs, data) = volume();
    let pg = Postgres::start_in(&data, None).unwrap();
    let (mut writer, feeder) = writer(&pg);
    let c = cli();
    workload(&c, &pg, &data);
    std::thread::sleep(Duration::from_millis(500));
    let b = c.ok(&["backup", "pg", "-o", "json"]).json();
    feeder.join().unwrap();
    assert!(writer.wait().unwrap().success());
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    assert!(st["quiesce"].is_null(), "nothing is paused in atomic mode");
    let committed = committed(&pg);

    let rp = st["restorePoint"].as_str().unwrap();
    let restored = fs.mount.join("restored");
    c.ok(&[
        "restore",
        "pg",
        "--from",
        rp,
        "-p",
        &format!("volumes={{\"data\":\"{}\"}}", restored.display()),
    ]);
    let copy = Postgres::start_on(&restored).unwrap();
    assert!(
        copy.log()
            .contains("database system was not properly shut down")
            || copy.log().contains("redo"),
        "the copy did not recover as from a crash:\n{}",
        copy.log()
    );
    let max = assert_sound_prefix(&copy, committed);
    eprintln!("restored {max} of {committed} rows committed by the end of the backup");
}

#[test]
fn a_lowlevel_base_backup_starts_from_its_label_and_replays_the_archive() {
    let (fs, data) = volume();
    let mut pg = Postgres::start_in(&data, None).unwrap();
    let archive = pg.archive_wal().unwrap();
    let (mut writer, feeder) = writer(&pg);
    let c = cli();
    workload(&c, &pg, &data);

    std::thread::sleep(Duration::from_millis(300));
    let b = c
        .ok(&["backup", "pg", "-p", "mode=lowlevel", "-o", "json"])
        .json();
    feeder.join().unwrap();
    assert!(writer.wait().unwrap().success());
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    let out = &st["outputs"];
    let (start, stop) = (
        out["startLsn"].as_str().unwrap(),
        out["stopLsn"].as_str().unwrap(),
    );
    assert_eq!(out["mode"], "lowlevel");
    let committed = committed(&pg);

    let rp = st["restorePoint"].as_str().unwrap();
    let point = c.ok(&["get", "restorepoint", rp, "-o", "json"]).json();
    let kinds: Vec<&str> = point["spec"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["metadata"]["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"pg-backup-label"),
        "no label stored: {point:#}"
    );

    // The restore needs the archive: without restoreCommand it is refused before anything.
    let restored = fs.mount.join("restored");
    let volumes = format!("volumes={{\"data\":\"{}\"}}", restored.display());
    let refused = c.run(&["restore", "pg", "--from", rp, "-p", &volumes]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("restoreCommand"),
        "{}",
        refused.stderr
    );
    assert!(!restored.exists());

    let fetch = format!("restoreCommand=cp {}/%f %p", archive.display());
    c.ok(&["restore", "pg", "--from", rp, "-p", &volumes, "-p", &fetch]);
    let copy = Postgres::start_on(&restored).unwrap();
    copy.wait_promoted().unwrap();
    let log = copy.log();
    // Recovery started where the label says, not from the copy's own pg_control, and
    // reached the backup's end through WAL fetched from the archive.
    assert!(
        log.contains(&format!("starting backup recovery with redo LSN {start}")),
        "the copy did not start from the base backup's label (start {start}):\n{log}"
    );
    assert!(
        log.contains("completed backup recovery"),
        "the copy did not reach the backup's end ({stop}):\n{log}"
    );
    assert!(
        log.contains("restored log file"),
        "nothing came from the archive:\n{log}"
    );
    let label = std::fs::read_to_string(restored.join("backup_label.old")).unwrap();
    assert!(
        label.contains(&format!("START WAL LOCATION: {start}")) && label.contains("LABEL: coffer"),
        "{label}"
    );
    let max = assert_sound_prefix(&copy, committed);
    eprintln!("restored {max} of {committed} rows (archive replayed to its end)");
    drop(copy);

    // A restore point whose label is gone cannot be restored, and says why.
    let stored: Vec<_> = walkdir(&c.location_dir())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "backup_label"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    std::fs::remove_file(&stored[0]).unwrap();
    let again = fs.mount.join("again");
    let lost = c.run(&[
        "restore",
        "pg",
        "--from",
        rp,
        "-p",
        &format!("volumes={{\"data\":\"{}\"}}", again.display()),
        "-p",
        &fetch,
    ]);
    assert!(!lost.ok);
    assert!(lost.stderr.contains("backup_label"), "{}", lost.stderr);
    assert!(!again.exists(), "a copy without its label was left");
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(walkdir(&p));
        } else {
            files.push(p);
        }
    }
    files
}
