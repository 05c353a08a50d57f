//! kafka incremental backups on real Kafka 4.4 brokers: each one stores only the records
//! since its base's cut and records its base; restoring the newest brings back every record
//! of the chain; a topic made again under the same name is copied whole; a damaged base
//! stops the restore before anything is written; a chain is deleted from its newest end;
//! a Policy with `fullEvery` makes chains and its retention deletes them whole, never a base
//! of what it keeps.

use super::kafka::{blueprint, position, rows, start_two};
use super::*;
use coffer_tests::files_under;
use serde_json::Value;

const TOPICS: [&str; 2] = ["inc-a", "inc-b"];

fn backup(c: &Cli, incremental: bool) -> (String, Value) {
    let mut args = vec!["backup", "chain", "-o", "json"];
    if incremental {
        args.push("--incremental");
    }
    let r = c.run(&args);
    (restore_point_of(&r), r.json()["status"]["outputs"].clone())
}

fn spec(c: &Cli, rp: &str) -> Value {
    c.ok(&["get", "restorepoint", rp, "-o", "json"]).json()["spec"].clone()
}

/// The keys of a restore point's own record-batch objects.
fn segments(c: &Cli, rp: &str) -> Vec<String> {
    spec(c, rp)["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["key"].as_str())
        .filter(|k| k.ends_with(".batches"))
        .map(str::to_string)
        .collect()
}

#[test]
fn kafka_incremental_backups_chain_and_restore_every_record_of_the_chain() {
    let (src, dst) = start_two();
    for t in TOPICS {
        src.tool(&["topic", t, "3"]);
        src.tool(&["produce", t, "1000"]);
    }
    let c = cli();
    let yaml = blueprint("kafka-chain", &[src.bootstrap(), dst.bootstrap()])
        + &workload(
            "chain",
            "kafka-chain",
            &[],
            None,
            &format!(
                "{{backup: {{bootstrap: \"{}\", topics: [inc-a, inc-b]}}, restore: {{bootstrap: \"{}\"}}}}",
                src.bootstrap(),
                dst.bootstrap()
            ),
        );
    assert!(c.apply(&yaml).ok);

    // Nothing to build on yet: the first one is full.
    let (full, out) = backup(&c, true);
    assert_eq!(out["records"], "2000", "{out}");
    assert_eq!(spec(&c, &full)["base"], Value::Null);

    // 500 more records in inc-a and the group committed among them: the incremental
    // stores only those, in inc-a's partitions.
    src.tool(&["produce", "inc-a", "500"]);
    src.tool(&["commit", "billing", "inc-a", "0", "400"]);
    let (second, out) = backup(&c, true);
    assert_eq!(
        (out["records"].as_str(), out["inheritedRecords"].as_str()),
        (Some("500"), Some("2000")),
        "{out}"
    );
    assert_eq!(spec(&c, &second)["base"], full.as_str());
    let own = segments(&c, &second);
    assert!(
        own.len() == 3 && own.iter().all(|k| k.starts_with("topics/inc-a/")),
        "the incremental stored {own:?}"
    );

    // inc-b deleted and made again under the same name (a new topic id): copied whole,
    // never chained onto the old topic's records.
    src.tool(&["drop", "inc-b"]);
    src.tool(&["topic", "inc-b", "3"]);
    src.tool(&["produce", "inc-b", "300"]);
    src.tool(&["produce", "inc-a", "200"]);
    let (third, out) = backup(&c, true);
    assert_eq!(
        (out["records"].as_str(), out["inheritedRecords"].as_str()),
        (Some("500"), Some("1500")),
        "{out}"
    );
    assert_eq!(spec(&c, &third)["base"], second.as_str());
    let listed = c.ok(&["get", "restorepoints"]).stdout;
    assert!(
        listed.contains("BASE") && listed.contains(&second),
        "{listed}"
    );

    // Restoring the newest brings back every record of the chain, per partition in order,
    // and the group resumes at the same record.
    c.ok(&["restore", "chain", "--from", &third]);
    let (from, to) = (
        src.tool(&[&["dump"], &TOPICS[..]].concat()),
        dst.tool(&[&["dump"], &TOPICS[..]].concat()),
    );
    for t in TOPICS {
        for p in 0..3 {
            assert_eq!(rows(&to, t, p), rows(&from, t, p), "{t}/{p}");
        }
    }
    for (t, n) in [("inc-a", 1700), ("inc-b", 300)] {
        let restored: usize = (0..3).map(|p| rows(&to, t, p).len()).sum();
        assert_eq!(restored, n, "{t}");
    }
    let (old, new) = (
        src.tool(&["group", "billing", "inc-a"])["inc-a/0"]
            .as_i64()
            .unwrap(),
        dst.tool(&["group", "billing", "inc-a"])["inc-a/0"]
            .as_i64()
            .unwrap(),
    );
    assert_eq!(
        rows(&to, "inc-a", 0)[position(&to, "inc-a", 0, new)],
        rows(&from, "inc-a", 0)[position(&from, "inc-a", 0, old)]
    );

    // A chain is deleted from its newest end.
    let r = c.run(&["delete", &full]);
    assert!(
        !r.ok && r.stderr.contains(&format!("is the base of {second}")),
        "{}",
        r.stderr
    );
    let described = c.ok(&["describe", "restorepoint", &second]).stdout;
    assert!(
        described.contains(&format!("the base of: {third}")),
        "{described}"
    );

    // A damaged base: the restore of the newest is refused before anything is written.
    let victim = files_under(&c.location_dir())
        .into_iter()
        .find(|p| {
            let s = p.to_string_lossy();
            s.contains(&full) && s.contains("inc-a")
        })
        .expect("a segment object of the full backup");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let copy = "topicMap={\"inc-a\": \"a-copy\", \"inc-b\": \"b-copy\"}";
    let r = c.run(&["restore", "chain", "--from", &third, "-p", copy]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains(&format!("builds on {full}")) && r.stderr.contains("verification"),
        "{}",
        r.stderr
    );
    let mut names: Vec<&str> = TOPICS.to_vec();
    names.sort();
    assert_eq!(dst.tool(&["topics"]), serde_json::json!(names));

    for rp in [&third, &second, &full] {
        c.ok(&["delete", rp]);
    }
    assert_eq!(restore_point_count(&c), 0);
    let left = files_under(&c.location_dir());
    assert!(left.is_empty(), "objects left: {left:?}");

    // A Policy: every 3rd backup full, retention keeps one an hour. Its incrementals keep
    // their bases; the next full lets the whole chain go, newest first.
    assert!(
        c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {name: stream}\nspec: {frequency: '@hourly', fullEvery: 3, selector: {workloads: [chain]}, retention: {hourly: 1}}\n")
            .ok
    );
    let mut made: Vec<(String, Value)> = Vec::new();
    for _ in 0..4 {
        src.tool(&["produce", "inc-a", "30"]);
        let report = c.ok(&["policy", "run", "stream", "-o", "json"]).json();
        let rp = report["backups"][0]["restorePoint"]
            .as_str()
            .unwrap_or_else(|| panic!("{report}"))
            .to_string();
        made.push((rp.clone(), spec(&c, &rp)["base"].clone()));
        let failed: Vec<&Value> = report["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["result"] != "Completed")
            .collect();
        assert!(failed.is_empty(), "{report}");
    }
    let bases: Vec<Value> = made.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(
        bases,
        vec![
            Value::Null,
            Value::from(made[0].0.clone()),
            Value::from(made[1].0.clone()),
            Value::Null
        ],
        "full, incremental, incremental, full"
    );
    let names: Vec<String> = c
        .ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        vec![made[3].0.clone()],
        "retention after the second full"
    );
}
