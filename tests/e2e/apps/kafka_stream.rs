//! kafka streamed by the local daemon (a Policy's `stream`) from a real Kafka 4.4 broker
//! while a producer writes for two minutes: links chain as it goes, a cut taken mid-way
//! restores exactly the records acknowledged before it, the newest link restores every
//! record, a quiet topic makes no new restore points, and the stream's lag and size show
//! in `coffer describe policy` and the daemon's metrics.

use super::kafka::{blueprint, rows, start_two};
use super::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const POLICY: &str = "live-stream";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The Policy's status of the stream of `live`.
fn stream(c: &Cli) -> Value {
    let p = c.ok(&["get", "policy", POLICY, "-o", "json"]).json();
    let p = if p.is_array() { p[0].clone() } else { p };
    p["status"]["streams"][0].clone()
}

/// Wait until the stream's status satisfies `done`.
fn wait_for(c: &Cli, log: &std::path::Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = stream(c);
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {s:#}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn kafka_streamed_by_the_daemon_restores_each_cut_exactly() {
    let (src, dst) = start_two();
    src.tool(&["topic", "live", "3"]);
    let c = cli();
    let yaml = blueprint("kafka-live", &[src.bootstrap(), dst.bootstrap()])
        + &workload(
            "live",
            "kafka-live",
            &[],
            None,
            &format!(
                "{{backup: {{bootstrap: \"{}\", topics: [live]}}, restore: {{bootstrap: \"{}\"}}}}",
                src.bootstrap(),
                dst.bootstrap()
            ),
        )
        + &format!(
            "---\napiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {POLICY}}}\nspec: {{frequency: '@onDemand', stream: {{every: 3s}}, selector: {{workloads: [live]}}, retention: {{hourly: 24}}}}\n"
        );
    assert!(c.apply(&yaml).ok);

    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("daemon.log");
    let metrics_port = coffer_tests::free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut daemon = c
        .command()
        .args(["daemon", "--metrics-addr", &metrics])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    coffer_tests::reap_with_this_process(daemon.id(), None);

    let producer = coffer_tests::kafka::spawn_tool(&src.bootstrap(), &["stream", "live", "120"]);
    // A cut mid-way, while the stream runs and the producer writes.
    std::thread::sleep(Duration::from_secs(50));
    let before = now_ms();
    let r = c.run(&["backup", "live", "--incremental", "-o", "json"]);
    let after = now_ms();
    let cut = restore_point_of(&r);
    let acks = producer.join().unwrap()["acks"].as_array().unwrap().clone();
    assert!(acks.len() > 20_000, "{} records produced", acks.len());

    // The stream chained links while the producer wrote, then found nothing new.
    let s = wait_for(&c, &log, "no quiet link after the producer stopped", |s| {
        s["unchanged"].as_u64() > Some(0) && s["made"].as_u64() >= Some(10)
    });
    assert_eq!(s["lagRecords"], 0, "{s}");
    assert!(s["links"].as_u64() >= Some(10), "{s}");
    assert!(s["error"].is_null(), "{s}");
    let newest = s["restorePoint"].as_str().unwrap().to_string();
    let links: Vec<Value> = c
        .ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["metadata"]["labels"]["coffer.dev/stream"] == POLICY)
        .cloned()
        .collect();
    assert!(links.len() >= 10, "{} links", links.len());
    assert!(
        links
            .iter()
            .filter(|r| r["spec"]["base"].is_string())
            .count()
            >= links.len() - 1,
        "links not chained"
    );
    // Quiet: no more restore points while nothing is produced.
    let quiet = s["unchanged"].as_u64().unwrap();
    wait_for(&c, &log, "the stream stopped linking", |s| {
        s["unchanged"].as_u64() >= Some(quiet + 2)
    });
    assert_eq!(stream(&c)["restorePoint"], newest.as_str());

    // The cut restores exactly the records acknowledged before it: every record acked
    // before the backup began, none that was not acked when it ended.
    let map = "topicMap={\"live\": \"live-cut\"}";
    c.ok(&["restore", "live", "--from", &cut, "-p", map]);
    let (from, to) = (src.tool(&["dump", "live"]), dst.tool(&["dump", "live-cut"]));
    for p in 0..3usize {
        let got = rows(&to, "live-cut", p);
        assert_eq!(got[..], rows(&from, "live", p)[..got.len()], "live/{p}");
        let acked = |until: i64| {
            acks.iter()
                .filter(|a| a[0] == p && a[2].as_i64().unwrap() < until)
                .count()
        };
        assert!(
            got.len() >= acked(before) && got.len() <= acked(after),
            "partition {p}: {} restored; {} acked before the cut, {} by its end",
            got.len(),
            acked(before),
            acked(after)
        );
    }
    // The stream's newest link holds every record.
    let map = "topicMap={\"live\": \"live-all\"}";
    c.ok(&["restore", "live", "--from", &newest, "-p", map]);
    let all = dst.tool(&["dump", "live-all"]);
    let mut total = 0;
    for p in 0..3usize {
        assert_eq!(
            rows(&all, "live-all", p),
            rows(&from, "live", p),
            "live/{p}"
        );
        total += rows(&all, "live-all", p).len();
    }
    assert_eq!(total, acks.len());

    // Users see it: describe and the metrics.
    let described = c.ok(&["describe", "policy", POLICY]).stdout;
    assert!(
        described.contains("Stream:      every 3s") && described.contains(&newest),
        "{described}"
    );
    let body = coffer_tests::http::request(metrics_port, "GET", "/metrics", &[], b"").text();
    for series in [
        "coffer_stream_lag_records{policy=\"live-stream\",workload=\"live\"} 0",
        "coffer_stream_links{policy=\"live-stream\",workload=\"live\"}",
        "coffer_stream_objects{policy=\"live-stream\",workload=\"live\"}",
        "coffer_stream_links_unchanged_total{policy=\"live-stream\",workload=\"live\"}",
    ] {
        assert!(body.contains(series), "{series} not in:\n{body}");
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
