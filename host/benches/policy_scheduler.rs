//! The local scheduler under load: one `coffer daemon` (no cluster) with 500 Workloads
//! under 3 Policies, on a clock the bench moves (COFFER_TEST_CLOCK), a trivial test plugin
//! (the hostile plugin's `ok` backup: one small object). Per tick it measures the daemon's
//! CPU, the latency from the tick (the moment the clock reaches it) to each ActionSet's
//! start (p50/p99), and the tick's wall time; the daemon's CPU in a minute with nothing due;
//! `coffer get compliance` over the 500; and, on the same Workloads in the same run, the
//! "cron and a CLI" way — one `coffer backup` process per Workload — for a ratio.
//! `cargo bench -p coffer --bench policy_scheduler`.

use coffer_tests::cli::Cli;
use jiff::{SignedDuration, Timestamp};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WORKLOADS: usize = 500;
const TICKS: i32 = 3;

/// User plus system CPU seconds of a process so far.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The local scheduler; killed with the bench process whatever happens.
fn daemon(c: &Cli, clock: &Path) -> Child {
    let child = c
        .command()
        .args(["daemon"])
        .env("COFFER_TEST_CLOCK", clock)
        .env("COFFER_LOG", "warn")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    coffer_tests::reap_with_this_process(child.id(), None);
    child
}

fn action_sets(c: &Cli) -> Vec<serde_json::Value> {
    c.ok(&["get", "actionsets", "-o", "json"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
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
    // Three Policies splitting the 500 (200, 200, 100), all hourly.
    for (p, range) in [("gold", 0..200), ("silver", 200..400), ("bronze", 400..500)] {
        yaml += &format!(
            "---\napiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {p}}}\nspec:\n  frequency: \"@hourly\"\n  startingDeadline: 2h\n  selector: {{workloads: [{}]}}\n  retention: {{hourly: 24}}\n",
            names[range].join(", ")
        );
    }
    let applied = c.apply(&yaml);
    assert!(applied.ok, "{}", applied.stderr);

    let clock = c.home.path().join("clock");
    let now = Timestamp::now();
    let hour = SignedDuration::from_hours(1);
    let base = Timestamp::from_second(now.as_second() - now.as_second() % 3600).unwrap();
    std::fs::write(&clock, now.to_string()).unwrap();
    let mut d = daemon(&c, &clock);
    let pid = d.id();
    std::thread::sleep(Duration::from_secs(2));

    // A minute with nothing due: the scheduler's own cost.
    let idle0 = cpu(pid);
    std::fs::write(&clock, (now + SignedDuration::from_secs(60)).to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu(pid) - idle0;

    println!("policy_scheduler: {WORKLOADS} workloads, 3 Policies, trivial plugin");
    for i in 1..=TICKS {
        let tick = base + hour * i;
        let cpu0 = cpu(pid);
        let moved = Timestamp::now();
        let t0 = Instant::now();
        std::fs::write(&clock, (tick + SignedDuration::from_secs(5)).to_string()).unwrap();
        // The tick is over when every Policy has recorded it (backups and retention done).
        let tick_s = tick.to_string();
        loop {
            let policies = c.ok(&["get", "policies", "-o", "json"]).json();
            let done = policies
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| {
                    p["status"]["runningTick"].is_null()
                        && p["status"]["runs"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|r| r["tick"] == tick_s.as_str()))
                })
                .count();
            if done == 3 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(600),
                "tick {i}: {done}/3 Policies done"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let wall = t0.elapsed().as_secs_f64();
        let sets: Vec<_> = action_sets(&c)
            .into_iter()
            .filter(|s| {
                s["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("policy-")
            })
            .collect();
        let spent = cpu(pid) - cpu0;
        let stamp = tick.strftime("%Y%m%d-%H%M%S").to_string();
        let mut lat: Vec<f64> = sets
            .iter()
            .filter(|s| s["metadata"]["name"].as_str().unwrap().ends_with(&stamp))
            .filter_map(|s| s["status"]["startTime"].as_str()?.parse::<Timestamp>().ok())
            .map(|t| t.duration_since(moved).as_secs_f64())
            .collect();
        lat.sort_by(f64::total_cmp);
        let failed = sets
            .iter()
            .filter(|s| s["status"]["phase"] == "Failed")
            .count();
        assert_eq!(lat.len(), WORKLOADS, "tick {i}: one ActionSet per workload");
        assert_eq!(failed, 0, "tick {i}: {failed} failed");
        println!(
            "  tick {i}: wall {wall:.2} s, daemon CPU {spent:.2} s ({:.1} ms per backup), tick->ActionSet start p50 {:.2} s p99 {:.2} s",
            spent * 1000.0 / WORKLOADS as f64,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    println!("  a minute with nothing due: daemon CPU {:.3} s", idle);
    let t = Instant::now();
    let rows = c.ok(&["get", "compliance", "-o", "json"]).json();
    let compliance = t.elapsed().as_secs_f64();
    let compliant = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "Compliant")
        .count();
    println!(
        "  coffer get compliance: {compliance:.2} s for {} rows ({compliant} Compliant)",
        rows.as_array().unwrap().len()
    );
    let _ = d.kill();
    let _ = d.wait();

    // The same 500 backups the cron way: a coffer process per Workload.
    let t = Instant::now();
    for n in &names {
        c.ok(&["backup", n]);
    }
    let cron = t.elapsed().as_secs_f64();
    println!("  cron + `coffer backup` per workload: {cron:.2} s for {WORKLOADS}");
}
