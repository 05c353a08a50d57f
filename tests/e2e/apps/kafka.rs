//! kafka: topics backed up over the Kafka protocol from a real Kafka 4.4 broker while a
//! producer writes, and restored into a second broker: per partition the same records
//! (keys, values, headers in order with duplicate keys, timestamps) up to the cut, the
//! group resuming at the same record, the topics' configs. Then the refusals.

use super::*;
use coffer_tests::files_under;
use coffer_tests::kafka::Broker;
use serde_json::Value;

const TOPICS: [&str; 3] = ["orders", "events", "accounts"];

/// A Blueprint of the built-in plugin granted `net` (and the location).
pub(crate) fn blueprint(name: &str, net: &[String]) -> String {
    let net: Vec<String> = net.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: {name}}}\nspec:\n  plugin: {{builtin: kafka}}\n  grants: {{net: [{}], location: [read, write, delete]}}\n  limits: {{memory: 256Mi, timeouts: {{backup: 10m, restore: 10m}}}}\n---\n",
        net.join(", ")
    )
}

fn app(name: &str, blueprint: &str, src: &Broker, dst: &Broker) -> String {
    let topics: Vec<String> = TOPICS.iter().map(|t| format!("\"{t}\"")).collect();
    workload(
        name,
        blueprint,
        &[],
        None,
        &format!(
            "{{backup: {{bootstrap: \"{}\", topics: [{}]}}, restore: {{bootstrap: \"{}\"}}}}",
            src.bootstrap(),
            topics.join(", "),
            dst.bootstrap()
        ),
    )
}

/// A partition's records without their offsets (which a restore renumbers).
pub(crate) fn rows(dump: &Value, topic: &str, part: usize) -> Vec<Value> {
    dump[topic][part.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("offset");
            r
        })
        .collect()
}

/// The position of the record at `offset` in a partition's dump.
pub(crate) fn position(dump: &Value, topic: &str, part: usize, offset: i64) -> usize {
    dump[topic][part.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["offset"].as_i64() == Some(offset))
        .unwrap_or_else(|| panic!("no record at {topic}/{part} offset {offset}"))
}

pub(crate) fn start_two() -> (Broker, Broker) {
    let other = std::thread::spawn(Broker::start);
    let one = Broker::start();
    (one, other.join().unwrap())
}

#[test]
fn kafka_topics_restore_with_their_records_groups_and_configs() {
    let (src, dst) = start_two();
    assert_eq!(src.tool(&["fill"])["records"], 10_000);
    let before = src.tool(&[&["dump"], &TOPICS[..]].concat());
    let c = cli();
    let yaml = blueprint("kafka-test", &[src.bootstrap(), dst.bootstrap()])
        + &app("stream", "kafka-test", &src, &dst);
    assert!(c.apply(&yaml).ok);

    // A producer keeps writing while the backup runs.
    let live = coffer_tests::kafka::spawn_tool(&src.bootstrap(), &["produce", "events", "20000"]);
    let b = c.run(&["backup", "stream", "-o", "json"]);
    let rp = restore_point_of(&b);
    live.join().unwrap();
    let outputs = &b.json()["status"]["outputs"];
    assert_eq!(outputs["topics"], "3", "{outputs}");
    assert_eq!(outputs["groups"], "1", "{outputs}");
    // Each connection is on the audit trail with the bytes that crossed it.
    let fetched: u64 = b.json()["status"]["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == format!("tcp {}", src.bootstrap()))
        .map(|e| e["bytes"].as_u64().unwrap_or(0))
        .sum();
    let rps = c.ok(&["get", "restorepoints", "-o", "json"]).json();
    let stored: u64 = rps[0]["spec"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["key"].as_str().unwrap_or("").ends_with(".batches"))
        .map(|a| a["size"].as_u64().unwrap())
        .sum();
    assert!(
        stored > 100_000 && fetched > stored,
        "{fetched} bytes audited on the source's connections, {stored} bytes of batches stored"
    );
    let after = src.tool(&[&["dump"], &TOPICS[..]].concat());

    c.ok(&["restore", "stream", "--from", &rp]);
    let restored = dst.tool(&[&["dump"], &TOPICS[..]].concat());
    let mut total = 0;
    for t in TOPICS {
        for p in 0..3 {
            let (got, had, now) = (
                rows(&restored, t, p),
                rows(&before, t, p),
                rows(&after, t, p),
            );
            assert!(
                got.len() >= had.len(),
                "{t}/{p}: {} records restored, {} were there before the backup",
                got.len(),
                had.len()
            );
            assert_eq!(
                got[..],
                now[..got.len()],
                "{t}/{p}: not the source's records up to the cut"
            );
            total += got.len();
        }
    }
    assert_eq!(outputs["records"].as_str().unwrap(), total.to_string());
    // Duplicate header keys survived, in order.
    let with_dups = rows(&restored, "orders", 0)
        .iter()
        .filter(|r| {
            r["headers"]
                .to_string()
                .contains(r#"["dup","6669727374"],["dup","7365636f6e64"]"#)
        })
        .count();
    assert!(with_dups > 100, "{with_dups} records with both dup headers");

    // The group resumes at the record after its last committed one, as it would have.
    let src_group = src.tool(&["group", "billing", "orders"]);
    let dst_group = dst.tool(&["group", "billing", "orders"]);
    assert_eq!(src_group.as_object().unwrap().len(), 2, "{src_group}");
    for p in [0usize, 1] {
        let k = format!("orders/{p}");
        let (old, new) = (
            src_group[&k].as_i64().unwrap(),
            dst_group[&k]
                .as_i64()
                .unwrap_or_else(|| panic!("{dst_group}")),
        );
        assert_eq!(
            rows(&restored, "orders", p)[position(&restored, "orders", p, new)],
            rows(&after, "orders", p)[position(&after, "orders", p, old)],
            "orders/{p}: the group resumes at another record"
        );
    }
    for t in TOPICS {
        assert_eq!(
            dst.tool(&["configs", t]),
            src.tool(&["configs", t]),
            "{t}'s configs"
        );
    }

    // The target is not empty now: refused, and nothing changes.
    let r = c.run(&["restore", "stream", "--from", &rp]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("is not empty") && r.stderr.contains("purge: true"),
        "{}",
        r.stderr
    );
    assert_eq!(dst.tool(&[&["dump"], &TOPICS[..]].concat()), restored);
    // Under another name, beside it; first refused while the group has a live consumer
    // (its offsets cannot move under it), before any topic is made.
    let copy = "topicMap={\"orders\": \"orders-copy\", \"events\": \"events-copy\", \"accounts\": \"accounts-copy\"}";
    let mut member =
        coffer_tests::kafka::tool_command(&dst.bootstrap(), &["hold", "billing", "orders"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut joined = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(member.stdout.as_mut().unwrap()),
        &mut joined,
    )
    .unwrap();
    assert!(joined.contains("joined"), "{joined:?}");
    let r = c.run(&["restore", "stream", "--from", &rp, "-p", copy]);
    drop(member.stdin.take());
    assert!(member.wait().unwrap().success());
    assert!(!r.ok);
    assert!(
        r.stderr.contains("billing (")
            && r.stderr.contains("active members")
            && r.stderr.contains("params.groups: false"),
        "{}",
        r.stderr
    );
    let mut names = TOPICS.to_vec();
    names.sort();
    assert_eq!(
        dst.tool(&["topics"]),
        serde_json::json!(names),
        "a refused restore made a topic"
    );
    c.ok(&["restore", "stream", "--from", &rp, "-p", copy]);
    let copy = dst.tool(&["dump", "orders-copy"]);
    for p in 0..3 {
        assert_eq!(rows(&copy, "orders-copy", p), rows(&restored, "orders", p));
    }
    // Purge: a compacted topic cannot be purged (Kafka refuses DeleteRecords there), so
    // the restore is refused before any topic changes (the compacted one comes first).
    let r = c.run(&["restore", "stream", "--from", &rp, "-p", "purge=true"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("accounts cannot be purged"),
        "{}",
        r.stderr
    );
    assert_eq!(dst.tool(&["dump", "events"])["events"], restored["events"]);

    // A record batch larger than anything read whole (20 MiB), and compacted batches of
    // each codec with gaps in their offsets: restored as they were.
    src.tool(&["huge", "huge"]);
    assert_eq!(src.tool(&["compacted", "ledger"])["gapped"], 3);
    let yaml = workload(
        "more",
        "kafka-test",
        &[],
        None,
        &format!(
            "{{backup: {{bootstrap: \"{}\", topics: [huge, ledger]}}, restore: {{bootstrap: \"{}\"}}}}",
            src.bootstrap(),
            dst.bootstrap()
        ),
    );
    assert!(c.apply(&yaml).ok);
    let rp = restore_point_of(&c.run(&["backup", "more", "-o", "json"]));
    let r = c
        .ok(&["restore", "more", "--from", &rp, "-o", "json"])
        .json();
    let renumbered: u32 = r["status"]["outputs"]["renumberedBatches"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(renumbered >= 3, "{renumbered} batches with gaps restored");
    let (from, to) = (
        src.tool(&["dump", "huge", "ledger"]),
        dst.tool(&["dump", "huge", "ledger"]),
    );
    assert_eq!(rows(&to, "huge", 0).len(), 3);
    assert_eq!(rows(&to, "huge", 0), rows(&from, "huge", 0));
    for p in 0..3 {
        assert_eq!(
            rows(&to, "ledger", p),
            rows(&from, "ledger", p),
            "ledger/{p}"
        );
    }
}

#[test]
fn kafka_without_a_grant_or_with_the_broker_down_fails_and_records_nothing() {
    let mut src = Broker::start();
    src.tool(&["topic", "orders", "1"]);
    src.tool(&["produce", "orders", "100"]);
    let c = cli();
    let other = format!("127.0.0.1:{}", coffer_tests::free_port());
    // Granted another port of the same host only: the connect is denied.
    let yaml = blueprint("kafka-narrow", std::slice::from_ref(&other))
        + &workload(
            "narrow",
            "kafka-narrow",
            &[],
            None,
            &format!(
                "{{backup: {{bootstrap: \"{}\", topics: [orders]}}}}",
                src.bootstrap()
            ),
        );
    assert!(c.apply(&yaml).ok);
    fails_with(&c, &["backup", "narrow"], "spec.grants.net");
    // No net grant at all.
    let yaml = "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {name: kafka-none}\nspec:\n  plugin: {builtin: kafka}\n  grants: {location: [read, write, delete]}\n---\n".to_string()
        + &workload(
            "none",
            "kafka-none",
            &[],
            None,
            &format!("{{backup: {{bootstrap: \"{}\", topics: [orders]}}}}", src.bootstrap()),
        );
    assert!(c.apply(&yaml).ok);
    fails_with(&c, &["backup", "none"], "net");
    // A topic that is not there.
    let yaml = blueprint("kafka-ok", &[src.bootstrap()])
        + &workload(
            "missing",
            "kafka-ok",
            &[],
            None,
            &format!(
                "{{backup: {{bootstrap: \"{}\", topics: [nope]}}}}",
                src.bootstrap()
            ),
        );
    assert!(c.apply(&yaml).ok);
    fails_with(
        &c,
        &["backup", "missing"],
        "[\"nope\"] are not on the cluster",
    );
    // The broker dies mid-fetch: Failed, no RestorePoint, no objects left behind.
    src.tool(&["bulk", "bulk", "200"]);
    let yaml = workload(
        "bulk",
        "kafka-ok",
        &[],
        None,
        &format!(
            "{{backup: {{bootstrap: \"{}\", topics: [bulk]}}}}",
            src.bootstrap()
        ),
    );
    assert!(c.apply(&yaml).ok);
    let backup = c
        .command()
        .args(["backup", "bulk", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let segment = |p: &std::path::PathBuf| p.to_string_lossy().contains(".batches");
    let started = std::time::Instant::now();
    while !files_under(&c.location_dir()).iter().any(segment) {
        assert!(
            started.elapsed().as_secs() < 120,
            "no segment written in 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    src.kill();
    let out = backup.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "the backup outlived its broker:\n{stdout}"
    );
    let a: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(a["status"]["phase"], "Failed", "{a}");
    let error = a["status"]["error"].as_str().unwrap();
    assert!(error.contains(&src.bootstrap()), "{error}");
    assert_eq!(restore_point_count(&c), 0);
    let left = files_under(&c.location_dir());
    assert!(
        left.is_empty(),
        "objects left by the failed backup: {left:?}"
    );
    // And with the broker down from the start.
    fails_with(&c, &["backup", "missing"], &src.bootstrap());

    // The broker dies mid-restore: the restore fails naming it, and says which topic it
    // created holds part of the backup (it cannot delete it with the broker gone).
    let mut dst = Broker::start();
    dst.tool(&["bulk", "big", "300"]);
    let yaml = blueprint("kafka-dst", &[dst.bootstrap()])
        + &workload(
            "big",
            "kafka-dst",
            &[],
            None,
            &format!(
                "{{backup: {{bootstrap: \"{b}\", topics: [big]}}, restore: {{bootstrap: \"{b}\", topicMap: {{big: big-copy}}}}}}",
                b = dst.bootstrap()
            ),
        );
    assert!(c.apply(&yaml).ok);
    let rp = restore_point_of(&c.run(&["backup", "big", "-o", "json"]));
    let restore = c
        .command()
        .args(["restore", "big", "--from", &rp])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let topics = dst.tool(&["topics"]);
        if topics.as_array().unwrap().iter().any(|t| t == "big-copy") {
            break;
        }
        assert!(started.elapsed().as_secs() < 120, "no big-copy in 120 s");
    }
    dst.kill();
    let out = restore.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the restore outlived its broker");
    assert!(
        stderr.contains(&dst.bootstrap())
            && stderr.contains("(big-copy) could not be deleted")
            && stderr.contains("params.purge: true"),
        "{stderr}"
    );
}

/// Two brokers: partitions led by both and groups coordinated by both. Every partition is
/// fetched from and produced to its own leader, and every group is found, whichever broker
/// coordinates it.
#[test]
fn kafka_on_two_brokers_reaches_every_leader_and_coordinator() {
    let (one, two) = Broker::start_pair();
    let placed = one.tool(&["spread", "spread", "6", "8"]);
    let nodes = |v: &Value| -> std::collections::BTreeSet<i64> {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_i64().unwrap())
            .collect()
    };
    assert_eq!(nodes(&placed["leaders"]).len(), 2, "{placed}");
    assert_eq!(nodes(&placed["coordinators"]).len(), 2, "{placed}");
    let c = cli();
    let yaml = blueprint("kafka-pair", &[one.bootstrap(), two.bootstrap()])
        + &workload(
            "pair",
            "kafka-pair",
            &[],
            None,
            &format!(
                "{{backup: {{bootstrap: \"{}\", topics: [spread]}}, restore: {{bootstrap: \"{}\", topicMap: {{spread: spread-copy}}}}}}",
                one.bootstrap(),
                two.bootstrap()
            ),
        );
    assert!(c.apply(&yaml).ok);
    let b = c.run(&["backup", "pair", "-o", "json"]);
    let rp = restore_point_of(&b);
    assert_eq!(b.json()["status"]["outputs"]["groups"], "8");
    c.ok(&["restore", "pair", "--from", &rp]);
    let (from, to) = (
        one.tool(&["dump", "spread"]),
        two.tool(&["dump", "spread-copy"]),
    );
    for p in 0..6 {
        assert_eq!(rows(&to, "spread-copy", p).len(), 100);
        assert_eq!(rows(&to, "spread-copy", p), rows(&from, "spread", p), "{p}");
    }
    for g in 0..8 {
        let (old, new) = (
            one.tool(&["group", &format!("g{g}"), "spread"]),
            two.tool(&["group", &format!("g{g}"), "spread-copy"]),
        );
        for p in 0..6 {
            assert_eq!(
                new[format!("spread-copy/{p}")],
                old[format!("spread/{p}")],
                "g{g} on partition {p}"
            );
        }
    }
}
