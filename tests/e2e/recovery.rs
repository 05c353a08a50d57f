//! A coffer process killed in the middle of a backup leaves no ActionSet "Running" forever:
//! the next coffer marks it Failed with the reason and removes its partial objects.

use coffer_tests::cli::Cli;
use coffer_tests::{files_under, test_plugin};
use std::time::{Duration, Instant};

#[test]
fn a_killed_backup_ends_failed_and_leaves_no_objects() {
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), None);
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: hostile}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    exec: [\"sleep **\"]\n    location: [read, write, delete]\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: victim}}\nspec: {{blueprint: hostile}}\n",
        test_plugin("hostile").display()
    ));
    assert!(applied.ok, "{}", applied.stderr);

    let mut child = c
        .command()
        .args(["backup", "victim", "-p", "mode=hang-after-write"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the plugin has written its object and is blocked.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files_under(&c.location_dir())
        .iter()
        .any(|p| p.ends_with("part.bin.zst"))
    {
        assert!(Instant::now() < deadline, "the object never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = c.ok(&["get", "actionsets", "-o", "json"]).json();
    assert_eq!(running[0]["status"]["phase"], "Running");

    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();

    // The next coffer settles it.
    let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
    let a = &sets[0];
    assert_eq!(a["status"]["phase"], "Failed", "{a}");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(
        err.contains("exited before it finished")
            && err.contains("1 partial object(s) were removed"),
        "{err}"
    );
    assert!(
        c.ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        files_under(&c.location_dir()).is_empty(),
        "{:?}",
        files_under(&c.location_dir())
    );

    // And the next backup works.
    let ok = c
        .ok(&["backup", "victim", "-p", "mode=ok", "-o", "json"])
        .json();
    assert_eq!(ok["status"]["phase"], "Completed");
}
