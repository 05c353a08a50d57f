//! cassandra-medusa 0.31.0 against a real Cassandra 5.0.9 node, through the `medusa`
//! Blueprint in local mode: full and differential backups, an in-place restore over a
//! truncated table, a restore that fails after medusa stopped the node (the node comes back
//! on its own data), a backup gone from medusa's storage, a stopped node, verify, delete
//! and purge. The node is shared by the process, so all of it is one test.

use super::*;
use coffer_tests::cassandra::Cassandra;

const TABLE: &str = "shop.orders";

/// The names medusa lists.
fn medusa_backups(node: &Cassandra) -> String {
    let out = node.medusa(&["list-backups"]);
    assert!(
        out.status.success(),
        "medusa list-backups: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn medusa_workload(node: &Cassandra, params: &str) -> String {
    let path = format!("{}:/usr/bin:/bin", Cassandra::medusa_path().display());
    workload(
        "cass",
        "medusa",
        &[
            (
                "MEDUSA_CONFIG_FILE",
                &node.medusa_ini().display().to_string(),
            ),
            ("PATH", &path),
        ],
        None,
        params,
    )
}

#[test]
fn medusa_backs_up_restores_in_place_and_rolls_back_a_failed_restore() {
    let node = Cassandra::shared();
    node.cql(
        "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}; \
         CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, note text);",
    );
    node.insert(TABLE, 0..120);
    node.insert(TABLE, 120..200);
    let at_full = node.rows(TABLE);
    assert_eq!(at_full.len(), 200);

    let c = cli();
    assert!(c.apply(&medusa_workload(node, "{backup: {mode: full}}")).ok);
    let full = c.run(&["backup", "cass", "-o", "json"]);
    let full_rp = restore_point_of(&full);
    let out = &full.json()["status"]["outputs"];
    let full_name = out["backup"].as_str().unwrap().to_string();
    assert!(full_name.starts_with("coffer-2"), "{out}");
    assert_eq!(out["mode"], "full");
    assert_eq!(out["cassandraVersion"], "5.0.9");
    assert!(
        out["files"].as_str().unwrap().parse::<u64>().unwrap() > 10,
        "{out}"
    );
    assert!(medusa_backups(node).contains(&full_name));

    // A differential: only what is new is uploaded, and it restores on its own.
    node.insert(TABLE, 200..300);
    let diff = c.run(&["backup", "cass", "-o", "json", "-p", "mode=differential"]);
    let diff_rp = restore_point_of(&diff);
    let diff_name = diff.json()["status"]["outputs"]["backup"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(diff.json()["status"]["outputs"]["mode"], "differential");
    let at_diff = node.rows(TABLE);
    assert_eq!(at_diff.len(), 300);

    // TRUNCATE, then restore the full in place: the rows equal those at the full backup.
    node.cql(&format!("TRUNCATE {TABLE}"));
    assert_eq!(node.count(TABLE), 0);
    let restored = c.run(&["restore", "cass", "--from", &full_rp, "-o", "json"]);
    assert!(restored.ok, "{}\n{}", restored.stdout, restored.stderr);
    assert!(node.up(), "the node is not serving after the restore");
    assert_eq!(node.rows(TABLE), at_full);
    // The safety backup served its purpose and is gone.
    assert!(!medusa_backups(node).contains("coffer-before-restore-"));

    // A restore that fails after medusa stopped the node and swapped its data: the node
    // is put back on its own rows and runs.
    node.insert(TABLE, 1000..1050);
    let current = node.rows(TABLE);
    assert_eq!(current.len(), 250);
    node.fail_next_start();
    let failed = c.run(&["restore", "cass", "--from", &diff_rp]);
    assert!(!failed.ok, "the restore succeeded: {}", failed.stdout);
    assert!(
        failed
            .stderr
            .contains("put back on its data from before the restore"),
        "{}",
        failed.stderr
    );
    assert!(node.up(), "the node is not serving after the rollback");
    assert_eq!(node.rows(TABLE), current);
    assert!(!medusa_backups(node).contains("coffer-before-restore-"));

    // The differential still restores (the failure was the node's start, not the backup).
    let again = c.run(&["restore", "cass", "--from", &diff_rp]);
    assert!(again.ok, "{}", again.stderr);
    let now = node.rows(TABLE);
    assert!(
        now == at_diff,
        "after restoring the differential: {} rows, not {}; medusa's log:\n{}\ncoffer:\n{}",
        now.len(),
        at_diff.len(),
        node.medusa_log(),
        again.stderr
    );

    // Verify: complete, every file present.
    let v = c.run(&["verify", &full_rp]);
    assert!(v.ok, "{}\n{}", v.stdout, v.stderr);

    // A backup gone from medusa's storage: the restore says so and leaves the node alone.
    let gone = node.medusa(&["delete-backup", &format!("--backup-name={diff_name}")]);
    assert!(
        gone.status.success(),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    node.insert(TABLE, 2000..2010);
    let before = node.rows(TABLE);
    let r = c.run(&["restore", "cass", "--from", &diff_rp]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("is not in the storage") && r.stderr.contains("not touched"),
        "{}",
        r.stderr
    );
    assert_eq!(node.rows(TABLE), before);
    assert!(!c.run(&["verify", &diff_rp]).ok);
    // Deleting its restore point still works: the backup is already gone.
    c.ok(&["delete", &diff_rp]);

    // A stopped node: medusa retries its CQL session for about six and a half minutes
    // before it gives up, so a copy of the Blueprint with a one-minute backup deadline
    // ends it; the backup fails naming the deadline, records nothing, leaves nothing.
    let blueprint = include_str!("../../../blueprints/medusa.yaml")
        .replace("name: medusa", "name: medusa-quick")
        .replace("backup: 12h", "backup: 60s");
    assert!(c.apply(&blueprint).ok);
    let quick = medusa_workload(node, "{}").replace("blueprint: medusa", "blueprint: medusa-quick");
    assert!(
        c.apply(&quick.replace("{name: cass}", "{name: cass-quick}"))
            .ok
    );
    node.stop();
    let listed = medusa_backups(node);
    fails_with(&c, &["backup", "cass-quick"], "spec.limits.timeouts.backup");
    assert_eq!(
        medusa_backups(node),
        listed,
        "a failed backup left a backup behind"
    );
    node.start_again();
    assert_eq!(node.rows(TABLE), before);

    // Delete with purge: the backup leaves medusa's storage.
    assert!(
        c.apply(&medusa_workload(
            node,
            "{backup: {mode: full}, delete: {purge: true}}"
        ))
        .ok
    );
    c.ok(&["delete", &full_rp]);
    assert!(!medusa_backups(node).contains(&full_name));
    assert_eq!(restore_point_count(&c), 0);
}
