//! How long an application-consistent backup holds the application, against how long the
//! whole backup takes, as the data grows: MariaDB on a loop-mounted btrfs whose data
//! directory holds 1 GiB and 4 GiB (an incompressible file beside InnoDB's own), backed up
//! by the built-in `mysql-consistent` Blueprint (read lock, one btrfs cut, unlock, export
//! through zstd and sha256 to a file location) while a writer inserts rows; and, on the same
//! data in the same run, MariaDB's own physical backup, `mariadb-backup --backup`, for a
//! ratio of the whole. The target: a window under 1 s whatever the size.
//! `cargo bench -p coffer --bench quiesce_window` (root; about 12 GiB of free disk).

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

fn main() {
    let cache = std::env::temp_dir().join("coffer-bench-cache");
    println!(
        "| data | lock window | whole backup (coffer) | mariadb-backup --backup | coffer / mariadb-backup |"
    );
    println!("|---|---|---|---|---|");
    for gib in [1u64, 4] {
        let fs = Btrfs::new((gib << 10) + 1024);
        let data = fs.subvolume("mariadb");
        let db = MariaDb::start_in(&data, PW, SERVER);
        db.sql("CREATE DATABASE shop; CREATE TABLE shop.w (n INT PRIMARY KEY AUTO_INCREMENT, at DATETIME(6)) ENGINE=InnoDB;");
        run(Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={}", data.join("filler.bin").display()))
            .args(["bs=4M", &format!("count={}", gib * 256), "status=none"]));
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
        let t = Instant::now();
        let b = c.ok(&["backup", "maria", "-o", "json"]).json();
        let whole = t.elapsed().as_secs_f64();
        let window = b["status"]["quiesce"]["ms"].as_u64().unwrap();
        // Make room for the reference's copy.
        let _ = std::fs::remove_dir_all(c.location_dir());

        let target = tempfile::tempdir_in("/tmp").unwrap();
        let t = Instant::now();
        run(Command::new("mariadb-backup")
            .args(["--no-defaults", "--backup", "-h127.0.0.1", "-uroot"])
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
