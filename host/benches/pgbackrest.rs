//! pgBackRest full and incremental backups through coffer (the `pgbackrest` Blueprint)
//! against the same pgBackRest run directly, on the same database in the same run:
//! PostgreSQL 15 archiving WAL into one repository, a pgbench database of scale
//! `COFFER_BENCH_SCALE` (default 50, about 750 MiB). coffer's backup is the whole action:
//! `info`, `check`, `backup --start-fast`, `info`, the record written to a file location.
//! The reference is `pgbackrest --start-fast backup` as `postgres`. The same pgbench writes
//! go before each incremental. Runs alternate (coffer, reference) `COFFER_BENCH_ROUNDS`
//! times (default 3); the table shows medians. `cargo bench -p coffer --bench pgbackrest`.

use coffer_tests::cli::Cli;
use coffer_tests::measure;
use coffer_tests::pgbackrest::{Repo, postgres_ids};
use coffer_tests::postgres::Postgres;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let scale = env_or("COFFER_BENCH_SCALE", 50);
    let rounds = env_or("COFFER_BENCH_ROUNDS", 3);
    let mut pg = Postgres::start(None).unwrap();
    let repo = Repo::for_server(&mut pg);
    pg.psql("postgres", "CREATE DATABASE bench").unwrap();
    pg.pgbench("bench", &["-i", "-q", "-s", &scale.to_string()])
        .unwrap();
    let size = pg
        .psql("bench", "SELECT pg_size_pretty(pg_database_size('bench'))")
        .unwrap();

    let cache = std::env::temp_dir().join("coffer-bench-cache");
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache));
    let applied = c.apply(&repo.workload("db"));
    assert!(applied.ok, "{}", applied.stderr);

    let coffer = |kind: &str| {
        measure(
            c.command()
                .args(["backup", "db", "-p", &format!("type={kind}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let reference = |kind: &str| {
        let (u, g) = postgres_ids();
        measure(
            Command::new("pgbackrest")
                .arg(format!("--config={}", repo.conf.display()))
                .args(["--stanza=main", "--start-fast"])
                .arg(format!("--type={kind}"))
                .arg("backup")
                .uid(u)
                .gid(g)
                .current_dir("/tmp")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let writes = || {
        pg.pgbench("bench", &["-n", "-c", "2", "-t", "2000"])
            .unwrap()
    };

    // Warm-up: the stanza made, the plugin compiled, the page cache warm for both.
    coffer("full");
    reference("full");

    let mut runs: Vec<(&str, Vec<(f64, f64)>)> = vec![
        ("coffer full", vec![]),
        ("pgbackrest full", vec![]),
        ("coffer incr", vec![]),
        ("pgbackrest incr", vec![]),
    ];
    for _ in 0..rounds {
        runs[0].1.push(coffer("full"));
        runs[1].1.push(reference("full"));
        writes();
        runs[2].1.push(coffer("incr"));
        writes();
        runs[3].1.push(reference("incr"));
    }
    let med = |i: usize| {
        let r: &Vec<(f64, f64)> = &runs[i].1;
        (
            median(r.iter().map(|m| m.0).collect()),
            median(r.iter().map(|m| m.1).collect()),
        )
    };

    println!("bench: {size} (pgbench scale {scale}), {rounds} rounds, medians\n");
    println!("| run | wall | peak RSS | coffer / pgbackrest (time, RSS) |");
    println!("|---|---|---|---|");
    for kind in [0, 2] {
        let (ct, crss) = med(kind);
        let (rt, rrss) = med(kind + 1);
        println!("| {} | {ct:.2} s | {crss:.0} MiB | |", runs[kind].0);
        println!(
            "| {} | {rt:.2} s | {rrss:.0} MiB | {:.3}, {:.2} |",
            runs[kind + 1].0,
            ct / rt,
            crss / rrss
        );
    }
}
