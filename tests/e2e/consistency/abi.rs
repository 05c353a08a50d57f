//! A plugin built against ABI 0.1.0 (before guards, the quiesce window and `cut-at`) runs
//! unchanged on this host: its logs, progress, checkpoint, exec, location and snapshot calls
//! reach the host, and its backup restores.

use super::cli;

#[test]
fn a_plugin_built_for_abi_0_1_still_backs_up_and_restores() {
    let c = cli();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: old}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    exec: [\"echo **\"]\n    location: [read, write, delete]\n    snapshot: true\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: old}}\nspec: {{blueprint: old}}\n",
        coffer_tests::test_plugin("abi_v0_1").display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let b = c.ok(&["backup", "old", "-o", "json"]).json();
    let status = &b["status"];
    assert_eq!(status["phase"], "Completed", "{b:#}");
    // Every 0.1.0 call reached the host and was answered there.
    assert_eq!(status["outputs"]["cancelled"], "false");
    let snap = status["outputs"]["snapshot"].as_str().unwrap();
    assert!(snap.contains("has no volume \\\"data\\\""), "{snap}");
    assert!(
        status["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "an ABI 0.1.0 plugin runs"),
        "{status:#}"
    );
    assert_eq!(status["checkpoint"], "{\"step\":\"stored\"}");

    let rp = status["restorePoint"].as_str().unwrap();
    let r = c.ok(&["restore", "old", "--from", rp, "-o", "json"]).json();
    assert_eq!(r["status"]["outputs"]["restored"], "written by ABI 0.1.0\n");
    c.ok(&["delete", rp]);
    assert!(
        c.ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
}
