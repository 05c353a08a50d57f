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

/// A coffer in another PID namespace (another container on the same state dir) cannot see
/// the runner in /proc: it must not take a live backup for a dead one. It goes by the
/// runner's heartbeat, and the backup completes with its objects.
#[test]
fn a_coffer_in_another_pid_namespace_leaves_a_live_backup_alone() {
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: unshare --pid needs root (CI runs as root)");
        return;
    }
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), None);
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: hostile}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    exec: [\"sleep *\"]\n    location: [read, write, delete]\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: victim}}\nspec: {{blueprint: hostile}}\n",
        test_plugin("hostile").display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let inner = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "backup",
            "victim",
            "-p",
            "mode=slow-ok",
            "-p",
            "bytes=6",
            "-o",
            "json",
        ])
        .envs(
            c.command()
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files_under(&c.location_dir())
        .iter()
        .any(|p| p.ends_with("part.bin.zst"))
    {
        assert!(Instant::now() < deadline, "the object never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Coffer commands from this namespace while it runs: each one runs recovery.
    for _ in 0..4 {
        let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
        assert_eq!(sets[0]["status"]["phase"], "Running", "{}", sets[0]);
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = inner.wait_with_output().unwrap();
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        done["status"]["phase"],
        "Completed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rps = c.ok(&["get", "restorepoints", "-o", "json"]).json();
    assert_eq!(rps.as_array().unwrap().len(), 1);
    assert!(
        files_under(&c.location_dir())
            .iter()
            .any(|p| p.ends_with("part.bin.zst")),
        "the live backup's object was removed"
    );
    // The backup is whole: every object verifies against its signed manifest.
    c.ok(&["verify", rps[0]["metadata"]["name"].as_str().unwrap()]);
}

/// A fresh state dir is the user's alone: the directory 0700, the catalog and keys 0600.
#[test]
fn a_fresh_state_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), None);
    c.ok(&["get", "profiles"]);
    let home = c.home.path();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(home), 0o700);
    assert_eq!(mode(&home.join("catalog.db")), 0o600);
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: h}}\nspec:\n  plugin: {{path: {}}}\n  grants: {{location: [read, write, delete]}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: w}}\nspec: {{blueprint: h}}\n",
        test_plugin("hostile").display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    c.ok(&["backup", "w", "-p", "mode=ok"]);
    assert_eq!(mode(&home.join("keys/manifest.key")), 0o600);
    assert_eq!(mode(&home.join("keys")), 0o700);
    // A state dir others can write to is refused, naming the fix.
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = c.run(&["get", "profiles"]);
    assert!(!r.ok && r.stderr.contains("chmod go-w"), "{}", r.stderr);
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
}
