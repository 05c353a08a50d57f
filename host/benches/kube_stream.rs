//! What a backup's bytes cost on a cluster, on the real control plane of the tests
//! (kube-apiserver, kwok): a PostgreSQL database of `COFFER_BENCH_BYTES` (default 2 GiB)
//! backed up to an S3 Profile (s3s-fs) twice — through the API server's exec connection and
//! the daemon, then through a mover beside the workload (docs/kubernetes.md, Movers) — against
//! `pg_dump -Fc -Z0 | zstd -3` run locally on the same database. Reports wall time, the
//! daemon's CPU seconds and peak RSS, the API server's CPU seconds, and the mover's CPU
//! seconds (here kwok runs a pod's exec on this machine, so the mover is a local process).
//! `cargo bench -p coffer --bench kube_stream`.

use coffer_tests::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use coffer_tests::kube_real::RealKube;
use coffer_tests::postgres::{PGBIN, Postgres};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn api(c: &coffer_tests::kube::Client, group: &str, kind: &str, ns: &str) -> Api<DynamicObject> {
    let (g, v) = if group.is_empty() {
        ("", "v1")
    } else {
        (group, "v1alpha1")
    };
    Api::namespaced_with(
        c.clone(),
        ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, kind)),
    )
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[tokio::main]
async fn main() {
    let bytes: u64 = std::env::var("COFFER_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30);
    let kube = RealKube::start();
    let client = kube.client().await;
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let read = |f: &str| std::fs::read_to_string(deploy.join(f)).unwrap();
    kube.apply(&read("crds.yaml")).await;
    kube.apply(&read("rbac.yaml")).await;
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n")
        .await;
    kube.apply(&read("examples/namespace.yaml")).await;

    // The database: ~1 KB rows up to the size asked for.
    let pg = Postgres::start(Some("bench-pw")).unwrap();
    pg.psql("postgres", "CREATE DATABASE bench").unwrap();
    // Hex of distinct hashes: compresses about 2:1, like much real data (a repeated
    // string would flatter zstd).
    let rows = bytes / 1000;
    let pad: Vec<String> = (1..=31).map(|k| format!("md5((g * {k})::text)")).collect();
    let started = Instant::now();
    pg.psql(
        "bench",
        &format!(
            "CREATE TABLE blob AS SELECT g AS id, {} AS pad FROM generate_series(1, {rows}) g",
            pad.join(" || ")
        ),
    )
    .unwrap();
    eprintln!(
        "made {rows} rows in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Where backups go: an encrypted S3 Profile, as in production.
    let s3 = coffer_tests::s3::S3sFs::start();
    s3.create_bucket("bench");
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    api(&client, "", "Secret", "coffer")
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-keys"},
                "stringData": {"identity": id.to_string().expose_secret(),
                               "id": coffer_tests::s3::S3S_ACCESS_KEY,
                               "secret": coffer_tests::s3::S3S_SECRET_KEY}}),
            ),
        )
        .await
        .unwrap();
    let key = |k: &str| json!({"secret": {"name": "s3-keys", "key": k}});
    api(&client, "coffer.dev", "Profile", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                "metadata": {"name": "default"},
                "spec": {"type": "s3", "bucket": "bench", "endpoint": s3.endpoint(),
                         "credentials": {"accessKeyId": key("id"), "secretAccessKey": key("secret")},
                         "encryption": {"recipients": [id.to_public().to_string()],
                                        "identity": key("identity")}}})),
        )
        .await
        .unwrap();
    // The subject's IP reaches this machine's PostgreSQL (kwok pods run here).
    kube.network(
        "db",
        &[
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", pg.port.to_string()),
        ],
    );
    kube.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: pg-auth, namespace: db}}\nstringData: {{password: bench-pw}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: pg\n  namespace: db\n  annotations: {{coffer.dev/blueprint: postgres-bitnami, secret.coffer.dev/password: pg-auth/password}}\nspec:\n  replicas: 1\n  serviceName: pg\n  selector: {{matchLabels: {{app: pg}}}}\n  template:\n    metadata: {{labels: {{app: pg}}}}\n    spec:\n      nodeName: {}\n      containers:\n        - name: postgres\n          image: postgres:15\n          env:\n            - {{name: PGUSER, value: postgres}}\n            - {{name: PATH, value: \"{PGBIN}:/usr/bin:/bin\"}}\n",
        coffer_tests::kube_real::NODE,
    ))
    .await;
    kube.pod_running("db", "pg-0").await;
    let apiserver: u32 = std::fs::read_to_string(kube.dir.join("run/kube-apiserver.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon_kubeconfig = kube.service_account_kubeconfig("coffer", "coffer").await;
    // What the API server spends with nothing to do (controllers, kwok's node, leases).
    let idle0 = cpu_seconds(apiserver);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = (cpu_seconds(apiserver) - idle0) / 10.0;

    let exec = backup(&client, &daemon_kubeconfig, apiserver, &[]).await;
    let mover = backup(
        &client,
        &daemon_kubeconfig,
        apiserver,
        &[
            "--mover-image",
            "bench/coffer:local",
            "--mover-threshold",
            "0",
            "--mover-binary",
            BIN,
        ],
    )
    .await;

    // The same dump, locally.
    let t1 = Instant::now();
    let local = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{PGBIN}/pg_dump -Fc -Z0 --dbname=bench | zstd -3 -q > /dev/null"
        ))
        .envs(pg.env())
        .env("PGPASSWORD", "bench-pw")
        .status()
        .unwrap();
    assert!(local.success());
    let local_wall = t1.elapsed().as_secs_f64();

    let mib = exec.bytes as f64 / (1 << 20) as f64;
    println!("kube_stream: {mib:.0} MiB dump to S3 (s3s-fs), on kube-apiserver 1.37 + kwok");
    println!("  kube-apiserver idle: {idle:.2} CPU-s per second");
    for (what, r) in [("exec stream", &exec), ("mover", &mover)] {
        let mover_cpu = if r.mover_cpu > 0.0 {
            format!("; mover {:.1} CPU-s", r.mover_cpu)
        } else {
            String::new()
        };
        println!(
            "  {what:12} {:6.1} s wall ({:.0} MiB/s)  daemon {:.1} CPU-s, peak RSS {:.0} MiB; kube-apiserver {:.1} CPU-s ({:.1} above idle){mover_cpu}",
            r.wall,
            mib / r.wall,
            r.daemon_cpu,
            r.daemon_rss,
            r.apiserver_cpu,
            r.apiserver_cpu - idle * r.wall,
        );
    }
    println!(
        "  local pg_dump | zstd: {local_wall:6.1} s wall ({:.0} MiB/s)",
        mib / local_wall
    );
    println!(
        "  ratios: exec / local {:.2}x, mover / local {:.2}x wall; mover / exec: daemon CPU {:.2}x, API server CPU {:.2}x",
        exec.wall / local_wall,
        mover.wall / local_wall,
        mover.daemon_cpu / exec.daemon_cpu,
        mover.apiserver_cpu / exec.apiserver_cpu
    );
}

struct Run {
    wall: f64,
    bytes: u64,
    daemon_cpu: f64,
    daemon_rss: f64,
    apiserver_cpu: f64,
    mover_cpu: f64,
}

/// CPU seconds of the `coffer mover run` processes alive now, by pid.
fn movers_cpu(seen: &mut std::collections::HashMap<u32, f64>) {
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.windows(10).any(|w| w == b"mover\0run\0") {
            // The data path only (pg_dump, its child, costs the same on either path).
            seen.insert(pid, cpu_seconds(pid));
        }
    }
}

/// One backup by a fresh daemon started with `flags`.
async fn backup(
    client: &coffer_tests::kube::Client,
    kubeconfig: &Path,
    apiserver: u32,
    flags: &[&str],
) -> Run {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Command::new(BIN)
        .args(["daemon", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "-n",
            "coffer",
            "--identity",
            "bench",
            "--lease-duration",
            "3s",
        ])
        .args(flags)
        .env("COFFER_HOME", work.path().join("home"))
        .env("COFFER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The previous daemon's Lease runs out first.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (d0, a0) = (cpu_seconds(daemon.id()), cpu_seconds(apiserver));
    let t0 = Instant::now();
    let sets = api(client, "coffer.dev", "ActionSet", "db");
    let name = sets
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
                "metadata": {"generateName": "bench-"},
                "spec": {"action": "backup", "workload": "statefulset/pg",
                         "params": {"databases": ["bench"], "globals": false}}}),
            ),
        )
        .await
        .unwrap()
        .metadata
        .name
        .unwrap();
    let mut movers = std::collections::HashMap::new();
    let status = loop {
        let s = sets.get(&name).await.unwrap().data["status"].clone();
        if matches!(s["phase"].as_str(), Some("Completed" | "Failed")) {
            break s;
        }
        movers_cpu(&mut movers);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = t0.elapsed().as_secs_f64();
    let (d1, a1) = (cpu_seconds(daemon.id()), cpu_seconds(apiserver));
    let daemon_rss = peak_rss_mib(daemon.id());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(status["phase"], "Completed", "{status:#}");
    Run {
        wall,
        bytes: status["bytes"].as_u64().unwrap_or(0),
        daemon_cpu: d1 - d0,
        daemon_rss,
        apiserver_cpu: a1 - a0,
        mover_cpu: movers.values().sum(),
    }
}
