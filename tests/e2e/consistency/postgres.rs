//! postgres-consistent against a real PostgreSQL 15 whose data directory is a btrfs
//! subvolume, while a writer commits one row at a time: the cut, taken with the server
//! running, restores into a cluster that recovers, passes pg_amcheck, and holds exactly a
//! prefix of the committed rows — every row up to some point, none after it, none torn.

use super::cli;
use coffer_tests::btrfs::Btrfs;
use coffer_tests::postgres::{PGBIN, Postgres};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_running_cluster_is_cut_and_restores_to_a_prefix_of_its_commits() {
    let fs = Btrfs::new(512);
    // `postgres` must reach the data directory through the test's private temp dir.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = fs.subvolume("pgdata");
    let pg = Postgres::start_in(&data, None).unwrap();
    pg.psql(
        "postgres",
        "CREATE TABLE w (n int PRIMARY KEY, pad text NOT NULL); \
         CREATE INDEX w_pad ON w (pad); \
         INSERT INTO w SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    )
    .unwrap();

    // A writer committing one row at a time through one session.
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

    let c = cli();
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
    std::thread::sleep(Duration::from_millis(500));
    let b = c.ok(&["backup", "pg", "-o", "json"]).json();
    feeder.join().unwrap();
    assert!(writer.wait().unwrap().success());
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    assert!(st["quiesce"].is_null(), "nothing is paused in atomic mode");
    let committed: u32 = pg
        .psql("postgres", "SELECT count(*) FROM w")
        .unwrap()
        .parse()
        .unwrap();

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
    // A prefix of the commits: rows 1..=k, k between the bulk load and the end, each whole.
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
    eprintln!("restored {max} of {committed} rows committed by the end of the backup");
}
