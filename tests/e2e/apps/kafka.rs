//! kafka: topics backed up over the Kafka protocol from a real Kafka 4.4 broker while a
//! producer writes, and restored into a second broker: per partition the same records
//! (keys, values, headers in order with duplicate keys, timestamps) up to the cut, the
//! group resuming at the same record, the topics' configs. Then the refusals.

use super::*;
use coffer_tests::kafka::Broker;
use serde_json::Value;

const TOPICS: [&str; 3] = ["orders", "events", "accounts"];

/// A Blueprint of the built-in plugin granted `net` (and the location).
fn blueprint(name: &str, net: &[String]) -> String {
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
fn rows(dump: &Value, topic: &str, part: usize) -> Vec<Value> {
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
fn position(dump: &Value, topic: &str, part: usize, offset: i64) -> usize {
    dump[topic][part.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["offset"].as_i64() == Some(offset))
        .unwrap_or_else(|| panic!("no record at {topic}/{part} offset {offset}"))
}

fn start_two() -> (Broker, Broker) {
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
    let boot = src.bootstrap();
    let live = std::thread::spawn(move || {
        let out = coffer_tests::kafka::tool_command(&boot, &["produce", "events", "20000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let b = c.run(&["backup", "stream", "-o", "json"]);
    let rp = restore_point_of(&b);
    live.join().unwrap();
    let outputs = &b.json()["status"]["outputs"];
    assert_eq!(outputs["topics"], "3", "{outputs}");
    assert_eq!(outputs["groups"], "1", "{outputs}");
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
    // Under another name, beside it.
    c.ok(&["restore", "stream", "--from", &rp, "-p", "topicMap={\"orders\": \"orders-copy\", \"events\": \"events-copy\", \"accounts\": \"accounts-copy\"}"]);
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
    // The broker is down.
    src.kill();
    fails_with(&c, &["backup", "missing"], &src.bootstrap());
}
