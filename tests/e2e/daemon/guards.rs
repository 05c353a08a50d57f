//! A daemon killed while its plugin holds a filesystem frozen: the next Lease holder runs
//! the guard the dead run recorded (the filesystem thaws) before it records the ActionSet
//! Failed. A guard a tenant writes into an ActionSet's status, with no seal of the
//! cluster's key, is never run.

use crate::env::*;
use coffer_tests::btrfs::Btrfs;

#[tokio::test]
async fn the_next_leader_thaws_what_a_killed_daemon_froze_and_never_runs_a_forged_guard() {
    let fs = Btrfs::new(256);
    let m = fs.mount.display().to_string();
    let env = Env::start_sim().await;
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "freeze"},
                "spec": {"plugin": {"path": coffer_tests::test_plugin("hostile")},
                         "grants": {"exec": ["fsfreeze **", "sleep **", "touch **"], "unsafeArgs": true,
                                    "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "guards", "guards": [["fsfreeze", "-u", m]],
                                               "argv": ["fsfreeze", "-f", m], "then": "hang", "count": 797}}}})),
        )
        .await
        .unwrap();
    env.statefulset("frozen", vec![], json!({"coffer.dev/blueprint": "freeze"}))
        .await;
    let (port_a, port_b) = (coffer_tests::free_port(), coffer_tests::free_port());
    let mut a = env.daemon("coffer-a", port_a);
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/frozen"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs.writable(Duration::from_millis(500)) {
        assert!(
            Instant::now() < deadline,
            "the filesystem was never frozen:\n{}",
            a.log()
        );
    }
    a.kill();
    let _ = std::process::Command::new("pkill")
        .args(["-x", "-f", "sleep 797"])
        .status();
    assert!(!fs.writable(Duration::from_millis(300)), "thawed too soon");

    // While no daemon runs, a tenant writes a Running ActionSet whose status holds a guard
    // of its own making.
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("forged");
    let forged = env
        .action_set(json!({"action": "backup", "workload": "statefulset/frozen"}))
        .await;
    let sets = coffer_api(&env.client, "ActionSet", "db");
    sets.patch_status(
        &forged,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "runner": "ghost",
            "heartbeat": "2026-01-01T00:00:00Z",
            "guards": [{"name": "forged", "command": ["touch", mark], "workload": "frozen",
                        "state": "Armed", "registeredMs": 0, "seal": "00"}]}})),
    )
    .await
    .unwrap();

    let _b = env.daemon("coffer-b", port_b);
    let status = env.finished(&name).await;
    assert!(fs.writable(Duration::from_secs(5)), "still frozen");
    assert_eq!(status["phase"], "Failed", "{status:#}");
    let err = status["error"].as_str().unwrap();
    assert!(
        err.contains("stopped before it finished")
            && err.contains("the guards it left armed were run: guard 0 (ok)"),
        "{err}"
    );
    assert_eq!(status["guards"][0]["firedBy"], "recovery", "{status:#}");
    assert_eq!(status["guards"][0]["state"], "Fired");

    let status = env.finished(&forged).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    assert!(!mark.exists(), "a forged guard ran");
    assert_eq!(status["guards"][0]["state"], "Failed", "{status:#}");
    assert!(
        status["guards"][0]["result"]
            .as_str()
            .unwrap()
            .contains("seal does not verify")
    );
}
