//! mysql-consistent against a real MariaDB whose data directory is a btrfs subvolume, while
//! a writer inserts about 200 rows a second: the read lock lasts as long as the cut (the
//! writer stalls only inside the recorded window), the export runs while the server takes
//! writes, and a server started on the restored directory recovers cleanly and holds
//! exactly the rows committed before the lock, its binlog ending at the recorded position.

use super::cli;
use coffer_tests::btrfs::Btrfs;
use coffer_tests::servers::MariaDb;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PW: &str = "s3cret-pw";
const SERVER: &[&str] = &[
    "--log-bin=mysql-bin",
    "--server-id=1",
    "--binlog-format=ROW",
];

/// A client that inserts `(n, UTC_TIMESTAMP(6))` rows every 5 ms until dropped.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Writer {
    fn start(port: u16) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut child = Command::new("mariadb")
                .args(["--no-defaults", "-h127.0.0.1", "-uroot", "--batch"])
                .arg(format!("-P{port}"))
                .env("MYSQL_PWD", PW)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut n = 0u32;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                writeln!(stdin, "INSERT INTO shop.w VALUES ({n}, UTC_TIMESTAMP(6));").unwrap();
                stdin.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(stdin);
            assert!(child.wait().unwrap().success());
            n
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// `(n, at)` rows of shop.w, in order.
fn rows(db: &MariaDb) -> Vec<(u32, String)> {
    db.sql("SELECT n, DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%f') FROM shop.w ORDER BY n")
        .lines()
        .map(|l| {
            let (n, at) = l.split_once('\t').unwrap();
            (n.parse().unwrap(), at.to_string())
        })
        .collect()
}

/// Microseconds since the epoch of `2026-12-03T14:55:01.123456` (UTC) or RFC 3339.
fn micros(t: &str) -> i64 {
    let t = if t.ends_with('Z') || t.contains('+') {
        t.to_string()
    } else {
        format!("{t}Z")
    };
    let ts = time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    (ts.unix_timestamp_nanos() / 1000) as i64
}

fn du_bytes(p: &std::path::Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn mariadb_is_locked_only_for_the_cut_and_restores_to_the_rows_committed_before_it() {
    let fs = Btrfs::new(2048);
    let data = fs.subvolume("mariadb");
    let db = MariaDb::start_in(&data, PW, SERVER);
    // Over 300 MB of data directory: 200 MB of incompressible rows (kept out of the
    // binlog) beside InnoDB's own files.
    db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.big (id INT PRIMARY KEY AUTO_INCREMENT, b BLOB) ENGINE=InnoDB; \
         USE shop; SET sql_log_bin = 0; \
         INSERT INTO shop.big (b) SELECT RANDOM_BYTES(1024) FROM seq_1_to_200000; \
         SET sql_log_bin = 1; \
         CREATE TABLE shop.w (n INT PRIMARY KEY, at DATETIME(6) NOT NULL) ENGINE=InnoDB;",
    );
    // Let InnoDB write the bulk load out first, so its background flushing does not stall
    // the writer's commits while the test watches for stalls.
    db.sql("SET GLOBAL innodb_max_dirty_pages_pct = 0");
    let deadline = Instant::now() + Duration::from_secs(120);
    while db
        .sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
        .trim()
        .parse::<u64>()
        .unwrap_or(0)
        > 50
    {
        assert!(Instant::now() < deadline, "InnoDB never flushed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let size = du_bytes(&data);
    assert!(size >= 300 << 20, "the data directory is only {size} bytes");

    let c = cli();
    let pwfile = c.home.path().join("pw");
    std::fs::write(&pwfile, PW).unwrap();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: maria}}\nspec:\n  blueprint: mysql-consistent\n  env: {{MYSQL_HOST: 127.0.0.1, MYSQL_TCP_PORT: \"{port}\"}}\n  secrets: {{password: {{file: {pw}}}}}\n  volumes: {{data: {data}}}\n  params: {{backup: {{host: 127.0.0.1, port: {port}, user: root}}}}\n",
        port = db.port,
        pw = pwfile.display(),
        data = data.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);

    let writer = Writer::start(db.port);
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let b = c.ok(&["backup", "maria", "-o", "json"]).json();
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let written = writer.finish();
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    let window = &st["quiesce"];
    let window_ms = window["ms"].as_u64().unwrap();
    let (begin, end) = (
        micros(window["begin"].as_str().unwrap()),
        micros(window["end"].as_str().unwrap()),
    );
    eprintln!(
        "datadir {} MB; lock window {window_ms} ms; whole backup {} ms; {written} rows written",
        size >> 20,
        took.as_millis()
    );
    assert!(window_ms < 1000, "the lock was held {window_ms} ms");
    assert!(
        took.as_millis() as u64 > 3 * window_ms,
        "the export did not run after the window"
    );

    // The writer stalled only inside the window: every pause longer than 750 ms between
    // two inserts overlaps it (shorter ones are two busy cores, not a lock).
    let original = rows(&db);
    assert!(original.len() > 300, "{} rows", original.len());
    for pair in original.windows(2) {
        let (a, b) = (micros(&pair[0].1), micros(&pair[1].1));
        if b - a > 750_000 {
            assert!(
                b >= begin - 50_000 && a <= end + 50_000,
                "the writer stalled {} ms outside the lock window ({} .. {}): rows {} and {}",
                (b - a) / 1000,
                window["begin"],
                window["end"],
                pair[0].0,
                pair[1].0
            );
        }
    }

    // Restore into a new directory and start a server on it.
    let rp = st["restorePoint"].as_str().unwrap();
    let restored = fs.mount.join("restored");
    let r = c
        .ok(&[
            "restore",
            "maria",
            "--from",
            rp,
            "-p",
            &format!("volumes={{\"data\":\"{}\"}}", restored.display()),
            "-o",
            "json",
        ])
        .json();
    assert_eq!(r["status"]["phase"], "Completed", "{r:#}");
    let copy = MariaDb::start_on(&restored, PW, SERVER);
    let log = copy.log();
    assert!(
        !log.contains("[ERROR]") && !log.to_lowercase().contains("corrupt"),
        "the restored server's log:\n{log}"
    );
    let checked = copy.sql("CHECK TABLE shop.w, shop.big");
    assert!(checked.lines().all(|l| l.ends_with("\tOK")), "{checked}");

    // Exactly the rows committed before the lock: a prefix of the original that ends
    // inside the window.
    let back = rows(&copy);
    assert!(!back.is_empty());
    assert_eq!(back[..], original[..back.len()], "the restored rows differ");
    let last = micros(&back.last().unwrap().1);
    assert!(last <= end, "a row after the window was restored");
    if let Some(next) = original.get(back.len()) {
        assert!(
            micros(&next.1) >= begin,
            "row {} was committed before the lock but is not in the restore",
            next.0
        );
    }
    assert_eq!(
        copy.sql("SELECT COUNT(*), SUM(LENGTH(b)) FROM shop.big"),
        db.sql("SELECT COUNT(*), SUM(LENGTH(b)) FROM shop.big")
    );

    // The binlog of the cut ends at the recorded position, with the recorded GTIDs.
    let outputs = &st["outputs"];
    let file = outputs["binlogFile"].as_str().unwrap();
    let pos: u64 = outputs["binlogPosition"].as_str().unwrap().parse().unwrap();
    assert!(file.starts_with("mysql-bin."), "{outputs:#}");
    assert_eq!(
        std::fs::metadata(restored.join(file)).unwrap().len(),
        pos,
        "the restored {file} does not end at the recorded position"
    );
    assert_eq!(
        copy.sql("SELECT @@GLOBAL.gtid_binlog_pos").trim(),
        outputs["gtidBinlogPos"].as_str().unwrap()
    );
}

#[test]
fn a_cut_that_fails_releases_the_lock_at_once() {
    let fs = Btrfs::new(512);
    let data = fs.subvolume("mariadb");
    let db = MariaDb::start_in(&data, PW, SERVER);
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.w (n INT PRIMARY KEY, at DATETIME(6)) ENGINE=InnoDB;");
    let c = cli();
    let pwfile = c.home.path().join("pw");
    std::fs::write(&pwfile, PW).unwrap();
    // `logs` is not one of the Workload's volumes: the cut fails inside the window.
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: maria}}\nspec:\n  blueprint: mysql-consistent\n  env: {{MYSQL_HOST: 127.0.0.1, MYSQL_TCP_PORT: \"{port}\"}}\n  secrets: {{password: {{file: {pw}}}}}\n  volumes: {{data: {data}}}\n  params: {{backup: {{host: 127.0.0.1, port: {port}, user: root, volumes: [data, logs]}}}}\n",
        port = db.port,
        pw = pwfile.display(),
        data = data.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let r = c.run(&["backup", "maria", "-o", "json"]);
    assert!(!r.ok);
    let a = r.json();
    let err = a["status"]["error"].as_str().unwrap();
    assert!(err.contains("no volume \"logs\""), "{err}");
    // The lock went with the session: a write goes through at once.
    let t = Instant::now();
    db.sql("INSERT INTO shop.w VALUES (1, UTC_TIMESTAMP(6))");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(a["status"]["quiesce"]["ms"].as_u64().is_some(), "{a:#}");
    // And no snapshot was left behind.
    let left: Vec<_> = std::fs::read_dir(fs.mount.join(".coffer-snapshots/maria"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
