//! Guards: registered before the step they undo, recorded on the ActionSet, run last first
//! on any end of the action unless fired or disarmed — and by the next coffer command when
//! the process running the action was killed. The quiesce window is recorded and bounded:
//! past `spec.limits.quiesce` the guards run (a real `fsfreeze -f` is thawed) and the action
//! fails naming the limit.

use super::{action_set, cli, hostile};
use coffer_tests::btrfs::Btrfs;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn guards_of(a: &serde_json::Value) -> Vec<(String, String, String)> {
    a["status"]["guards"]
        .as_array()
        .unwrap_or_else(|| panic!("no guards recorded: {a:#}"))
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["state"].as_str().unwrap().to_string(),
                g["firedBy"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn guard(name: &str, state: &str, by: &str) -> (String, String, String) {
    (name.into(), state.into(), by.into())
}

#[test]
fn guards_run_last_first_on_failure_and_a_disarmed_one_never_runs() {
    let c = cli();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    hostile(&c, "g", &["mkdir **", "touch **"], "");

    // `mkdir D/a` registered first, `mkdir D` second: both succeed only last-first.
    let guards = format!(
        "guards=[[\"mkdir\",\"{}\"],[\"mkdir\",\"{}\"]]",
        d.join("a").display(),
        d.display()
    );
    let r = c.run(&[
        "backup",
        "g",
        "-p",
        "mode=guards",
        "-p",
        &guards,
        "-p",
        "then=fail",
    ]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(d.join("a").is_dir(), "the guards did not run last first");
    let a = action_set(&c, "backup");
    assert_eq!(a["status"]["phase"], "Failed");
    assert!(
        a["status"]["error"]
            .as_str()
            .unwrap()
            .contains("failed after the guarded step")
    );
    assert_eq!(
        guards_of(&a),
        [
            guard("guard 0", "Fired", "end"),
            guard("guard 1", "Fired", "end")
        ]
    );
    assert!(c.ok(&["get", "restorepoints", "-o", "json"]).json()[0].is_null());

    // A trap ends the action the same way.
    let trap = dir.path().join("trap");
    let r = c.run(&[
        "backup",
        "g",
        "-p",
        "mode=guards",
        "-p",
        &format!("guards=[[\"touch\",\"{}\"]]", trap.display()),
        "-p",
        "then=trap",
    ]);
    assert!(!r.ok && r.stderr.contains("trap"), "{}", r.stderr);
    assert!(trap.exists(), "a trap skipped the guard");

    // Disarmed: never run, and the backup completes.
    let marker = dir.path().join("never");
    let b = c
        .ok(&[
            "backup",
            "g",
            "-p",
            "mode=guards",
            "-p",
            &format!("guards=[[\"touch\",\"{}\"]]", marker.display()),
            "-p",
            "then=disarm",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(b["status"]["phase"], "Completed");
    assert!(!marker.exists(), "a disarmed guard ran");
    assert_eq!(guards_of(&b), [guard("guard 0", "Disarmed", "")]);
}

#[test]
fn a_guard_is_checked_like_any_exec_before_the_step_it_guards() {
    let c = cli();
    let dir = tempfile::tempdir().unwrap();
    let step = dir.path().join("step");
    hostile(&c, "ungranted", &["touch **"], "");
    // `mkdir` is declared by the plugin but not granted: the guard is refused, so the
    // plugin stops before its step.
    let r = c.run(&[
        "backup",
        "ungranted",
        "-p",
        "mode=guards",
        "-p",
        "guards=[[\"mkdir\",\"/tmp/x\"]]",
        "-p",
        &format!("argv=[\"touch\",\"{}\"]", step.display()),
    ]);
    assert!(!r.ok);
    let a = action_set(&c, "backup");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(err.contains("denied") && err.contains("mkdir"), "{err}");
    assert!(!step.exists(), "the step ran without its guard");
    assert!(a["status"]["guards"].is_null(), "{a:#}");
}

#[test]
fn a_quiesce_window_is_recorded_on_the_action_set_and_the_restore_point() {
    let fs = Btrfs::new(256);
    let c = cli();
    let m = fs.mount.display().to_string();
    hostile(&c, "fz", &["fsfreeze **"], "");
    let b = c
        .ok(&[
            "backup",
            "fz",
            "-p",
            "mode=guards",
            "-p",
            "quiesce=true",
            "-p",
            &format!("guards=[[\"fsfreeze\",\"-u\",\"{m}\"]]"),
            "-p",
            &format!("argv=[\"fsfreeze\",\"-f\",\"{m}\"]"),
            "-p",
            "then=fire",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(b["status"]["phase"], "Completed", "{b:#}");
    assert!(fs.writable(Duration::from_secs(5)), "still frozen");
    assert_eq!(guards_of(&b), [guard("guard 0", "Fired", "plugin")]);
    let w = &b["status"]["quiesce"];
    let ms = w["ms"].as_u64().unwrap();
    assert_eq!(b["status"]["outputs"]["windowMs"], ms.to_string());
    assert!(ms < 10_000, "{w}");
    let rp = b["status"]["restorePoint"].as_str().unwrap();
    let listed = c.ok(&["get", "restorepoints"]).stdout;
    assert!(
        listed.contains("QUIESCED") && listed.contains(&format!("{ms}ms")),
        "{listed}"
    );
    let rp = c.ok(&["get", "restorepoint", rp, "-o", "json"]).json();
    assert_eq!(&rp["spec"]["quiesce"], w, "{rp:#}");
    // As times: RFC 3339 text does not sort ("…:05Z" > "…:05.1Z").
    let at = |k: &str| w[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(at("begin") <= at("end"), "{w}");
    // `describe` shows the window, each guard, and the calls that made them.
    let name = b["metadata"]["name"].as_str().unwrap();
    let shown = c.ok(&["describe", "actionset", name]).stdout;
    for want in [
        format!("Quiesced:     {ms}ms"),
        format!("fsfreeze -u {m}"),
        "Fired".to_string(),
        "runtime.add-guard".to_string(),
        "runtime.quiesce-end".to_string(),
    ] {
        assert!(shown.contains(&want), "{want:?} missing from:\n{shown}");
    }
}

#[test]
fn a_quiesce_past_its_limit_is_ended_by_the_guards_and_fails_the_action() {
    let fs = Btrfs::new(256);
    let c = cli();
    let m = fs.mount.display().to_string();
    hostile(&c, "slow", &["fsfreeze **", "sleep **"], "quiesce: 1s");
    let started = Instant::now();
    let r = c.run(&[
        "backup",
        "slow",
        "-p",
        "mode=guards",
        "-p",
        "quiesce=true",
        "-p",
        &format!("guards=[[\"fsfreeze\",\"-u\",\"{m}\"]]"),
        "-p",
        &format!("argv=[\"fsfreeze\",\"-f\",\"{m}\"]"),
        "-p",
        "then=hang",
    ]);
    assert!(!r.ok);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the hung plugin was not stopped"
    );
    assert!(fs.writable(Duration::from_secs(5)), "left frozen");
    let a = action_set(&c, "backup");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(
        err.contains("limit(quiesce)") && err.contains("spec.limits.quiesce (1s)"),
        "{err}"
    );
    assert_eq!(guards_of(&a), [guard("guard 0", "Fired", "limit")]);
    assert!(a["status"]["quiesce"]["ms"].as_u64().unwrap() >= 1000);
}

#[test]
fn a_runner_killed_while_frozen_is_thawed_by_the_next_coffer_command() {
    let fs = Btrfs::new(256);
    let c = cli();
    let m = fs.mount.display().to_string();
    hostile(&c, "killed", &["fsfreeze **", "sleep **"], "");
    let mut child = c
        .command()
        .args([
            "backup",
            "killed",
            "-p",
            "mode=guards",
            "-p",
            &format!("guards=[[\"fsfreeze\",\"-u\",\"{m}\"]]"),
            "-p",
            &format!("argv=[\"fsfreeze\",\"-f\",\"{m}\"]"),
            "-p",
            "then=hang",
            "-p",
            "count=787",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs.writable(Duration::from_millis(500)) {
        assert!(Instant::now() < deadline, "the filesystem was never frozen");
    }
    child.kill().unwrap(); // SIGKILL: no guard runs in the dead process
    child.wait().unwrap();
    let _ = std::process::Command::new("pkill")
        .args(["-x", "-f", "sleep 787"])
        .status();
    assert!(!fs.writable(Duration::from_millis(500)), "thawed too soon");

    // Any next command settles the dead run, thawing first.
    let a = action_set(&c, "backup");
    assert!(fs.writable(Duration::from_secs(5)), "still frozen");
    assert_eq!(a["status"]["phase"], "Failed");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(
        err.contains("exited before it finished")
            && err.contains("the guards it left armed were run: guard 0 (ok)"),
        "{err}"
    );
    assert_eq!(guards_of(&a), [guard("guard 0", "Fired", "recovery")]);
}

#[test]
fn an_interrupted_or_terminated_runner_thaws_before_it_exits() {
    let fs = Btrfs::new(256);
    let c = cli();
    let m = fs.mount.display().to_string();
    hostile(&c, "stopped", &["fsfreeze **", "sleep **"], "");
    for (signal, why) in [
        ("-INT", "cancelled by the user (interrupt)"),
        ("-TERM", "stopped by SIGTERM"),
    ] {
        let mut child = c
            .command()
            .args([
                "backup",
                "stopped",
                "-p",
                "mode=guards",
                "-p",
                &format!("guards=[[\"fsfreeze\",\"-u\",\"{m}\"]]"),
                "-p",
                &format!("argv=[\"fsfreeze\",\"-f\",\"{m}\"]"),
                "-p",
                "then=hang",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while fs.writable(Duration::from_millis(500)) {
            assert!(Instant::now() < deadline, "the filesystem was never frozen");
        }
        let sent = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Thawed by the runner itself before it exited, not by a later command.
        assert!(fs.writable(Duration::from_secs(5)), "{signal}: left frozen");
        let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
        let a = sets
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["status"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(why))
            })
            .unwrap_or_else(|| panic!("{signal}: no ActionSet failed with {why:?}: {sets:#}"));
        assert_eq!(guards_of(a), [guard("guard 0", "Fired", "end")]);
    }
}
