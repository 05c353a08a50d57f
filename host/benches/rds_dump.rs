//! `rds` `mode: dump` against `pg_dump -Fc | zstd` on the same database in the same run:
//! PostgreSQL 15 with a `shop` database of about `COFFER_BENCH_MIB` MiB (default 1024) of
//! half-compressible rows; moto plays RDS (DescribeDBInstances) and `endpointOverride` sends
//! the dump to the real server. coffer's backup is the whole action: the API call, the dump
//! of every database (and roles) streamed through zstd and sha256 into a file location.
//! The reference writes one zstd file. Wall time and peak RSS (the process tree's largest,
//! from wait4) of each, and their ratios. `cargo bench -p coffer --bench rds_dump`.

use coffer_tests::cli::Cli;
use coffer_tests::measure;
use coffer_tests::postgres::Postgres;
use coffer_tests::s3::Moto;
use std::process::Command;

fn main() {
    let mib: u64 = std::env::var("COFFER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let pw = "bench-pw";
    let pg = Postgres::start(Some(pw)).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    // ~200 bytes a row: an id, a repeated word and 32 hex characters of md5.
    let rows = mib * 1024 * 1024 / 200;
    pg.psql(
        "shop",
        &format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, note text, digest text); INSERT INTO orders SELECT g, repeat('order ', 20), md5(g::text) || md5((g * 7)::text) FROM generate_series(1, {rows}) g"
        ),
    )
    .unwrap();
    let size = pg
        .psql("shop", "SELECT pg_size_pretty(pg_database_size('shop'))")
        .unwrap();

    let moto = Moto::start();
    moto.rds("Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.micro&Engine=postgres&EngineVersion=15.4&AllocatedStorage=20&MasterUsername=postgres&MasterUserPassword=unused123");
    let cache = std::env::temp_dir().join("coffer-bench-cache");
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache));
    let dir = c.home.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    for (f, v) in [("id", "AKIDBENCH"), ("secret", "bench-secret"), ("pw", pw)] {
        std::fs::write(dir.join(f), v).unwrap();
    }
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {{name: aws}}\nspec:\n  type: aws-sigv4\n  region: us-east-1\n  endpoint: {e}\n  credentials:\n    accessKeyId: {{file: {d}/id}}\n    secretAccessKey: {{file: {d}/secret}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: db}}\nspec:\n  blueprint: rds\n  env: {{PGHOST: 127.0.0.1, PGPORT: \"{p}\"}}\n  secrets: {{password: {{file: {d}/pw}}}}\n  params:\n    backup: {{instance: shop, region: us-east-1, apiEndpoint: \"{e}\", mode: dump, endpointOverride: \"127.0.0.1:{p}\", globals: false, databases: [shop]}}\n",
        e = moto.endpoint(),
        d = dir.display(),
        p = pg.port
    ));
    assert!(applied.ok, "{}", applied.stderr);

    // A warm-up of each, so neither pays for a cold page cache or first plugin compile.
    let out = tempfile::tempdir().unwrap();
    let reference = |compress: &str| {
        let file = out.path().join("shop.dump.zst");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!(
                "pg_dump -Fc {compress} --dbname=shop | zstd -q -f -o {}",
                file.display()
            ),
        ])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", pw);
        let m = measure(&mut cmd);
        (m, std::fs::metadata(&file).unwrap().len())
    };
    let coffer = || {
        let m = measure(
            c.command()
                .args(["backup", "db"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        let stored: u64 = coffer_tests::files_under(&c.location_dir())
            .iter()
            .filter(|f| f.to_string_lossy().ends_with(".pgdump"))
            .map(|f| std::fs::metadata(f).unwrap().len())
            .max()
            .unwrap_or(0);
        (m, stored)
    };
    reference("");
    coffer();

    println!("shop: {size} ({rows} rows)\n");
    println!("| run | wall | peak RSS | output | coffer / it (time, RSS) |");
    println!("|---|---|---|---|---|");
    let ((ct, crss), csize) = coffer();
    println!(
        "| coffer backup (rds, mode: dump: pg_dump -Fc -Z0 → zstd, sha256, file location) | {ct:.2} s | {crss:.0} MiB | {:.1} MiB | |",
        csize as f64 / 1048576.0
    );
    for (label, compress) in [
        ("pg_dump -Fc | zstd", ""),
        ("pg_dump -Fc -Z0 | zstd", "-Z0"),
    ] {
        let ((t, rss), size) = reference(compress);
        println!(
            "| {label} | {t:.2} s | {rss:.0} MiB | {:.1} MiB | {:.2}, {:.2} |",
            size as f64 / 1048576.0,
            ct / t,
            crss / rss
        );
    }
}
