//! The dashboard's overview with 500 applications: 500 Workloads under 3 Policies, one
//! scheduler tick so each has a restore point and an ActionSet (a trivial test plugin),
//! then `coffer ui` and the overview page fetched 50 times over loopback: the time to the
//! whole answer (server time plus a loopback round trip), median and p99, and the page's
//! weight; the JSON applications list the same way; and, on the same state dir in the same
//! run, `coffer get compliance -o json` (a process per call) for a ratio.
//! `cargo bench -p coffer --bench ui_overview`.

use coffer_tests::cli::Cli;
use coffer_tests::http::request;
use jiff::{SignedDuration, Timestamp};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const WORKLOADS: usize = 500;
const ROUNDS: usize = 50;
const TOKEN: &str = "bench-token-0123456789abcdef";

fn median_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        v[v.len() / 2],
        v[((v.len() as f64 - 1.0) * 0.99).round() as usize],
    )
}

fn main() {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache));
    let plugin = coffer_tests::test_plugin("hostile");
    let mut yaml = format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: trivial}}\nspec:\n  plugin: {{path: {}}}\n  grants: {{location: [read, write, delete]}}\n  params: {{backup: {{mode: ok}}}}\n",
        plugin.display()
    );
    let names: Vec<String> = (0..WORKLOADS).map(|i| format!("app-{i:03}")).collect();
    for n in &names {
        yaml += &format!(
            "---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {n}}}\nspec: {{blueprint: trivial}}\n"
        );
    }
    for (p, range) in [("gold", 0..200), ("silver", 200..400), ("bronze", 400..500)] {
        yaml += &format!(
            "---\napiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {p}}}\nspec:\n  frequency: \"@hourly\"\n  startingDeadline: 2h\n  selector: {{workloads: [{}]}}\n  retention: {{hourly: 24}}\n",
            names[range].join(", ")
        );
    }
    assert!(c.apply(&yaml).ok);

    // One tick of the local scheduler: a backup of each of the 500.
    let clock = c.home.path().join("clock");
    let now = Timestamp::now();
    let tick = Timestamp::from_second(now.as_second() - now.as_second() % 3600).unwrap()
        + SignedDuration::from_hours(1);
    std::fs::write(&clock, now.to_string()).unwrap();
    let mut daemon = c
        .command()
        .arg("daemon")
        .env("COFFER_TEST_CLOCK", &clock)
        .env("COFFER_LOG", "warn")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    coffer_tests::reap_with_this_process(daemon.id(), None);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&clock, (tick + SignedDuration::from_secs(5)).to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = c
            .ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .map_or(0, |a| a.len());
        if n >= WORKLOADS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} restore points after 10 minutes"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();

    let token_file = c.home.path().join("ui-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let port = coffer_tests::free_port();
    let mut ui = c
        .command()
        .args(["ui", "--addr", &format!("127.0.0.1:{port}"), "--token-file"])
        .arg(&token_file)
        .env("COFFER_TEST_CLOCK", &clock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    coffer_tests::reap_with_this_process(ui.id(), None);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let time = |path: &str| {
        let mut ms = Vec::new();
        let mut size = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let a = request(port, "GET", path, &auth, &[]);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(a.status, 200, "{path}: {}", a.text());
            size = a.body.len();
        }
        let (m, p) = median_p99(ms);
        (m, p, size)
    };
    let (om, op, osize) = time("/");
    let (am, ap, asize) = time("/api/v1/applications");
    let _ = ui.kill();
    let _ = ui.wait();
    let mut cli_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        c.ok(&["get", "compliance", "-o", "json"]);
        cli_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (cm, _) = median_p99(cli_ms);
    println!(
        "ui_overview: {WORKLOADS} applications, 3 Policies, {WORKLOADS} restore points and ActionSets"
    );
    println!(
        "  overview page     median {om:.1} ms  p99 {op:.1} ms  {} KiB",
        osize / 1024
    );
    println!(
        "  api applications  median {am:.1} ms  p99 {ap:.1} ms  {} KiB",
        asize / 1024
    );
    println!("  coffer get compliance -o json (process per call)  median {cm:.1} ms");
    println!("  ratio overview / CLI compliance: {:.2}", om / cm);
}
