//! The daemon under load, against the Kubernetes API simulator (no real cluster exists
//! here): how long an ActionSet takes from creation to Completed, alone and while 50 other
//! actions run (the reconcile loop must not starve), how fast 50 concurrent actions are
//! stopped and cleaned up, the daemon's peak RSS, and pod-exec streaming against local exec
//! on the same plugin and bytes. `cargo bench -p coffer --bench daemon`.

use coffer_tests::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use coffer_tests::kube::config::{KubeConfigOptions, Kubeconfig};
use coffer_tests::kube::{Client, Config};
use coffer_tests::kube_sim::KubeSim;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");
const STREAM_BYTES: u64 = 512 << 20;

fn api(c: &Client, kind: &str, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("coffer.dev", "v1alpha1", kind));
    Api::namespaced_with(c.clone(), ns, &ar)
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

async fn create(c: &Client, spec: Value) -> String {
    api(c, "ActionSet", "db")
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
                        "metadata": {"generateName": "bench-"}, "spec": spec}),
            ),
        )
        .await
        .unwrap()
        .metadata
        .name
        .unwrap()
}

async fn phase(c: &Client, name: &str) -> String {
    api(c, "ActionSet", "db").get(name).await.unwrap().data["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn until(c: &Client, name: &str, want: &[&str]) -> Duration {
    let t = Instant::now();
    loop {
        let p = phase(c, name).await;
        if want.contains(&p.as_str()) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "{name} stuck in {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let sim = KubeSim::start();
    let kc = Kubeconfig::read_from(&sim.kubeconfig).unwrap();
    let c = Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let plugin = coffer_tests::test_plugin("hostile");
    api(&c, "Profile", "coffer")
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                "metadata": {"name": "default"},
                "spec": {"type": "file", "path": work.path().join("location")}}),
            ),
        )
        .await
        .unwrap();
    api(&c, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "bench"},
                "spec": {"plugin": {"path": plugin},
                         "grants": {"exec": ["sleep **", "head **"], "unsafeArgs": true, "location": ["read", "write", "delete"]}}})),
        )
        .await
        .unwrap();
    let sts = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
    Api::<DynamicObject>::namespaced_with(c.clone(), "db", &sts)
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "app", "annotations": {"coffer.dev/blueprint": "bench"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}},
                         "template": {"metadata": {"labels": {"app": "app"}},
                                      "spec": {"containers": [{"name": "main", "image": "x"}]}}}})),
        )
        .await
        .unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    let mut daemon = Command::new(BIN)
        .args(["daemon", "--kubeconfig"])
        .arg(&sim.kubeconfig)
        .args([
            "-n",
            "coffer",
            "--identity",
            "bench",
            "--max-concurrent",
            "64",
        ])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("COFFER_HOME", work.path().join("home"))
        .env("COFFER_CACHE_DIR", &cache)
        .env(
            "COFFER_LOG",
            std::env::var("BENCH_DAEMON_LOG_LEVEL").unwrap_or("warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("BENCH_DAEMON_LOG") {
            Some(f) => Stdio::from(std::fs::File::create(f).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();
    let ok = json!({"action": "backup", "workload": "statefulset/app", "params": {"mode": "ok"}});

    // Warm up (compile cache, the Lease).
    let n = create(&c, ok.clone()).await;
    until(&c, &n, &["Completed"]).await;

    let mut alone = Vec::new();
    for _ in 0..15 {
        let n = create(&c, ok.clone()).await;
        alone.push(until(&c, &n, &["Completed"]).await);
    }
    println!(
        "ActionSet created -> Completed, alone:              median {}",
        ms(median(alone.clone()))
    );

    // 50 actions that hang in a pod exec, then the same trivial action meanwhile.
    let hang = json!({"action": "backup", "workload": "statefulset/app",
                      "params": {"mode": "hang-after-write"}, "deadline": "20s"});
    let mut hanging = Vec::new();
    for _ in 0..50 {
        hanging.push(create(&c, hang.clone()).await);
    }
    let t = Instant::now();
    for h in &hanging {
        until(&c, h, &["Running"]).await;
    }
    println!(
        "50 hanging actions all Running after:               {}",
        ms(t.elapsed())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut loaded = Vec::new();
    for _ in 0..7 {
        let n = create(&c, ok.clone()).await;
        loaded.push(until(&c, &n, &["Completed"]).await);
    }
    println!(
        "ActionSet created -> Completed, with 50 running:    median {} (ratio to alone {:.2})",
        ms(median(loaded.clone())),
        median(loaded).as_secs_f64() / median(alone).as_secs_f64()
    );
    // Cancel all 50: killed, partial objects removed, recorded.
    let t = Instant::now();
    for h in &hanging {
        api(&c, "ActionSet", "db")
            .patch(
                h,
                &Default::default(),
                &coffer_tests::kube::api::Patch::Merge(json!({"spec": {"cancel": true}})),
            )
            .await
            .unwrap();
    }
    for h in &hanging {
        until(&c, h, &["Failed"]).await;
    }
    println!(
        "50 running actions cancelled and cleaned up in:    {}",
        ms(t.elapsed())
    );
    println!(
        "daemon peak RSS:                                    {:.0} MiB",
        peak_rss_mib(daemon.id())
    );

    // Streaming: the same plugin and bytes through pod exec (daemon) and local exec.
    let stream = json!({"action": "backup", "workload": "statefulset/app",
                        "params": {"mode": "stream", "bytes": STREAM_BYTES}});
    let mut pod = Vec::new();
    for _ in 0..3 {
        let n = create(&c, stream.clone()).await;
        pod.push(until(&c, &n, &["Completed"]).await);
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let home = work.path().join("local");
    let local_yaml = format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: bench}}\nspec:\n  plugin: {{path: {}}}\n  grants: {{exec: [\"head **\"], unsafeArgs: true, location: [read, write, delete]}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: app}}\nspec: {{blueprint: bench}}\n",
        plugin.display()
    );
    let apply = Command::new(BIN)
        .args(["apply", "-f", "-"])
        .env("COFFER_HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply
        .stdin
        .as_ref()
        .unwrap()
        .write_all(local_yaml.as_bytes())
        .unwrap();
    assert!(apply.wait_with_output().unwrap().status.success());
    let mut local = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(["backup", "app", "-p", "mode=stream"])
            .arg("-p")
            .arg(format!("bytes={STREAM_BYTES}"))
            .env("COFFER_HOME", &home)
            .env("COFFER_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        local.push(t.elapsed());
    }
    let (p, l) = (median(pod), median(local));
    println!(
        "{} MiB random through pod exec (daemon): {} ; local exec (CLI): {} ; ratio {:.2}",
        STREAM_BYTES >> 20,
        ms(p),
        ms(l),
        p.as_secs_f64() / l.as_secs_f64()
    );
}
