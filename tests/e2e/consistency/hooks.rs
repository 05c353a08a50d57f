//! Kasten K10's hook actions on the built-in `volumes` plugin, on a real btrfs volume: the
//! `backupPrehook` runs before the cut and the `backupPosthook` right after it — what the
//! prehook writes into the volume is in the restored copy, what the posthook writes is
//! not — and a posthook runs however the backup ends (a failed prehook, a failed cut), while
//! a hook the Blueprint does not grant stops the backup before anything runs.

use super::{action_set, cli};
use coffer_tests::btrfs::Btrfs;
use coffer_tests::cli::Cli;
use std::path::Path;

/// Blueprint `app-hooks` on builtin `volumes`, granting `touch` of exactly the `granted`
/// paths, with the hooks as its backup params; Workload `app` with `volumes`.
fn app(c: &Cli, volumes: &[(&str, &Path)], pre: &[&[&str]], post: &[&[&str]], granted: &[&Path]) {
    let hooks = |cmds: &[&[&str]]| {
        let list: Vec<String> = cmds
            .iter()
            .map(|argv| format!("{{command: {}}}", serde_json::to_string(argv).unwrap()))
            .collect();
        format!("[{}]", list.join(", "))
    };
    let mut grants: Vec<String> = granted
        .iter()
        .map(|p| format!("\"touch {}\"", p.display()))
        .collect();
    grants.push("\"test -e /coffer-nonexistent\"".into());
    let names: Vec<&str> = volumes.iter().map(|(n, _)| *n).collect();
    let vols: Vec<String> = volumes
        .iter()
        .map(|(n, p)| format!("{n}: {}", p.display()))
        .collect();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: app-hooks}}\nspec:\n  plugin: {{builtin: volumes}}\n  grants:\n    exec: [{}]\n    location: [read, write, delete]\n    snapshot: true\n  params:\n    backup:\n      volumes: {}\n      backupPrehook: {}\n      backupPosthook: {}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: app}}\nspec:\n  blueprint: app-hooks\n  volumes: {{{}}}\n",
        grants.join(", "),
        serde_json::to_string(&names).unwrap(),
        hooks(pre),
        hooks(post),
        vols.join(", ")
    ));
    assert!(applied.ok, "{}", applied.stderr);
}

#[test]
fn the_prehook_runs_before_the_cut_and_the_posthook_right_after_it() {
    let fs = Btrfs::new(256);
    let data = fs.subvolume("data");
    std::fs::write(data.join("table"), "rows").unwrap();
    let (pre, post) = (data.join("prehook-ran"), data.join("posthook-ran"));
    let c = cli();
    app(
        &c,
        &[("data", &data)],
        &[&["touch", pre.to_str().unwrap()]],
        &[&["touch", post.to_str().unwrap()]],
        &[&pre, &post],
    );
    let b = c.ok(&["backup", "app", "-o", "json"]).json();
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    assert!(post.exists(), "the posthook did not run");
    let guard = &st["guards"][0];
    assert_eq!(guard["name"], format!("posthook touch {}", post.display()));
    assert_eq!(guard["firedBy"], "plugin", "{guard:#}");
    assert!(st["quiesce"]["ms"].as_u64().is_some(), "{st:#}");

    let rp = st["restorePoint"].as_str().unwrap();
    let restored = fs.mount.join("restored");
    c.ok(&[
        "restore",
        "app",
        "--from",
        rp,
        "-p",
        &format!("volumes={{\"data\":\"{}\"}}", restored.display()),
    ]);
    assert_eq!(
        std::fs::read_to_string(restored.join("table")).unwrap(),
        "rows"
    );
    assert!(
        restored.join("prehook-ran").exists(),
        "the prehook ran after the cut"
    );
    assert!(
        !restored.join("posthook-ran").exists(),
        "the posthook ran before the cut"
    );
}

#[test]
fn a_posthook_runs_however_the_backup_ends() {
    let fs = Btrfs::new(256);
    let data = fs.subvolume("data");
    // Not a subvolume: it cannot be cut.
    let plain = fs.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let marks = tempfile::tempdir().unwrap();
    let post = marks.path().join("posthook-ran");

    // A prehook that fails.
    let c = cli();
    app(
        &c,
        &[("data", &data)],
        &[&["test", "-e", "/coffer-nonexistent"]],
        &[&["touch", post.to_str().unwrap()]],
        &[&post],
    );
    let r = c.run(&["backup", "app", "-o", "json"]);
    assert!(!r.ok);
    let a = action_set(&c, "backup");
    assert_eq!(a["status"]["phase"], "Failed");
    let why = a["status"]["error"].to_string();
    assert!(
        why.contains("backupPrehook `test -e /coffer-nonexistent`"),
        "{why}"
    );
    assert!(post.exists(), "a failed prehook left the posthook unrun");
    assert!(
        c.ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A cut that fails.
    std::fs::remove_file(&post).unwrap();
    let c = cli();
    app(
        &c,
        &[("data", &data), ("plain", &plain)],
        &[],
        &[&["touch", post.to_str().unwrap()]],
        &[&post],
    );
    assert!(!c.run(&["backup", "app"]).ok);
    assert_eq!(action_set(&c, "backup")["status"]["phase"], "Failed");
    assert!(post.exists(), "a failed cut left the posthook unrun");
}

#[test]
fn a_hook_the_blueprint_does_not_grant_stops_the_backup_before_anything_runs() {
    let fs = Btrfs::new(256);
    let data = fs.subvolume("data");
    let marks = tempfile::tempdir().unwrap();
    let (pre, post) = (marks.path().join("pre"), marks.path().join("post"));
    let c = cli();
    // The posthook is not granted: its guard is refused before the prehook runs.
    app(
        &c,
        &[("data", &data)],
        &[&["touch", pre.to_str().unwrap()]],
        &[&["touch", post.to_str().unwrap()]],
        &[&pre],
    );
    assert!(!c.run(&["backup", "app"]).ok);
    let a = action_set(&c, "backup");
    assert_eq!(a["status"]["phase"], "Failed");
    let why = a["status"]["error"].to_string();
    assert!(
        why.contains("denied") || why.contains("not granted"),
        "{why}"
    );
    assert!(
        !pre.exists(),
        "the prehook ran although its posthook was refused"
    );
    assert!(!post.exists());
}
