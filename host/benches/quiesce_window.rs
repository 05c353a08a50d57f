//! How long an application-consistent backup holds the application, against how long the
//! whole backup takes, as the data grows: MariaDB on a loop-mounted btrfs whose data
//! directory holds 1 GiB and 4 GiB of incompressible InnoDB rows, backed up
//! by the built-in `mysql-consistent` Blueprint (read lock, one btrfs cut, unlock, export
//! through zstd and sha256 to a file location) while a writer inserts rows; and, on the same
//! data in the same run, MariaDB's own physical backup, `mariadb-backup --backup`, for a
//! ratio of the whole. The target: a window under 1 s whatever the size.
//! Each backup starts from a cold page cache. `cargo bench -p coffer --bench
//! quiesce_window` (root; about 12 GiB of free disk).

use coffer_tests::btrfs::Btrfs;
use coffer_tests::cli::Cli;
use coffer_tests::servers::MariaDb;
use std::process::Command;
use std::time::Instant;

const PW: &str = "bench-pw";
const SERVER: &[&str] = &["--log-bin=mysql-bin", "--server-id=1"];

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both backups start from a cold page cache (the data was just written: warm for whichever
/// ran first).
fn drop_caches() {
    run(&mut Command::new("sync"));
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("dropping the page cache (root)");
}

fn main() {
    let cache = std::env::temp_dir().join("coffer-bench-cache");
    println!(
        "| InnoDB data | lock window | whole backup (coffer: cut, tar, zstd, sha256 to a file location) | mariadb-backup --backup (raw copy) | coffer / mariadb-backup |"
    );
    println!("|---|---|---|---|---|");
    for gib in [1u64, 4] {
        // Sparse: room for InnoDB's overhead on 1 KiB rows, used only as written.
        let fs = Btrfs::new((gib << 11) + 1024);
        let data = fs.subvolume("mariadb");
        let db = MariaDb::start_in(&data, PW, SERVER);
        db.sql("CREATE DATABASE shop; CREATE TABLE shop.big (id INT PRIMARY KEY AUTO_INCREMENT, b BLOB) ENGINE=InnoDB;");
        // 1 KiB random rows, 100 MiB a statement, kept out of the binlog.
        for _ in 0..gib * 10 {
            db.sql("USE shop; SET sql_log_bin = 0; INSERT INTO big (b) SELECT RANDOM_BYTES(1024) FROM seq_1_to_102400");
        }
        run(&mut Command::new("sync"));

        let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache));
        let pwfile = c.home.path().join("pw");
        std::fs::write(&pwfile, PW).unwrap();
        let applied = c.apply(&format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: maria}}\nspec:\n  blueprint: mysql-consistent\n  env: {{MYSQL_HOST: 127.0.0.1, MYSQL_TCP_PORT: \"{port}\"}}\n  secrets: {{password: {{file: {pw}}}}}\n  volumes: {{data: {data}}}\n  params: {{backup: {{host: 127.0.0.1, port: {port}, user: root}}}}\n",
            port = db.port,
            pw = pwfile.display(),
            data = data.display()
        ));
        assert!(applied.ok, "{}", applied.stderr);
        drop_caches();
        let t = Instant::now();
        let b = c.ok(&["backup", "maria", "-o", "json"]).json();
        let whole = t.elapsed().as_secs_f64();
        let window = b["status"]["quiesce"]["ms"].as_u64().unwrap();
        // Make room for the reference's copy.
        let _ = std::fs::remove_dir_all(c.location_dir());

        let target = tempfile::tempdir_in("/tmp").unwrap();
        drop_caches();
        let t = Instant::now();
        run(Command::new("mariadb-backup")
            .args([
                "--no-defaults",
                "--backup",
                "--host=127.0.0.1",
                "--user=root",
            ])
            .arg(format!("--port={}", db.port))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!(
                "--target-dir={}",
                target.path().join("b").display()
            ))
            .arg(format!("--password={PW}")));
        let reference = t.elapsed().as_secs_f64();
        println!(
            "| {gib} GiB | {window} ms | {whole:.1} s | {reference:.1} s | {:.2} |",
            whole / reference
        );
    }
}
