//! `coffer plugin run` and `--dry-run` against a real MariaDB.

use super::*;

/// `coffer plugin run`: a live trace of a real action, and `--dry-run`, which checks params
/// and grants and shows the calls without touching the workload.
#[test]
fn plugin_run_traces_live_and_dry_run_touches_nothing() {
    let r = Redis::start(None);
    r.cli(&["SET", "k", "v"]);
    let c = cli();
    let params = format!("{{backup: {{port: {}}}}}", r.port);
    assert!(c.apply(&workload("cache", "redis", &[], None, &params)).ok);

    let run = c.run(&["plugin", "run", "builtin:redis", "backup", "-w", "cache"]);
    assert!(run.ok, "{}", run.stderr);
    for want in [
        "exec.spawn",
        "redis-cli --no-auth-warning -p",
        "transfer.put",
        "dump.rdb",
    ] {
        assert!(
            run.stderr.contains(want),
            "{want} missing from the trace:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.contains("RestorePoint cache-"), "{}", run.stdout);
    assert_eq!(restore_point_count(&c), 1);
    let sets_before = c
        .ok(&["get", "actionsets", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .len();

    let dry = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache",
        "--dry-run",
    ]);
    assert!(dry.ok, "{}\n{}", dry.stdout, dry.stderr);
    for want in [
        "grants (the Blueprint's)",
        "redis-cli --no-auth-warning",
        "allowed",
        "exec.spawn",
        "simulated result",
    ] {
        assert!(dry.stdout.contains(want), "{want} missing:\n{}", dry.stdout);
    }
    // Nothing recorded, nothing stored.
    assert_eq!(restore_point_count(&c), 1);
    assert_eq!(
        c.ok(&["get", "actionsets", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        sets_before
    );

    // Bad params are refused by the plugin's validate().
    let bad = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache",
        "--dry-run",
        "-p",
        "port=0",
    ]);
    assert!(
        !bad.ok && bad.stderr.contains("params.port"),
        "{}",
        bad.stderr
    );

    // A restore needs a restore point, and the error says which flag gives it.
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["plugin", "run", "builtin:redis", "restore", "-w", "cache"];
        args.extend_from_slice(extra);
        let r = c.run(&args);
        assert!(
            !r.ok && r.stderr.contains("--from RESTOREPOINT"),
            "{}",
            r.stderr
        );
    }

    // A Blueprint that does not grant what the plugin needs: the dry run says so.
    let narrow = "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {name: redis-narrow}\nspec:\n  plugin: {builtin: redis}\n  grants: {exec: [\"redis-check-rdb **\"], location: [read, write, delete], secrets: [password]}\n";
    assert!(c.apply(narrow).ok);
    assert!(
        c.apply(&workload("cache2", "redis-narrow", &[], None, &params))
            .ok
    );
    let denied = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache2",
        "--dry-run",
    ]);
    assert!(!denied.ok);
    assert!(
        denied.stdout.contains("denied (not granted)"),
        "{}",
        denied.stdout
    );
    // The simulation runs under the Blueprint's grants: the refused call is shown refused
    // (never "ok" first), and the outcome is not a success.
    let refused_line = denied
        .stdout
        .lines()
        .find(|l| l.contains("exec.spawn") && l.contains("redis-cli"))
        .unwrap_or_else(|| panic!("no redis-cli call in:\n{}", denied.stdout));
    assert!(
        refused_line.contains("denied") && refused_line.ends_with("<- DENIED"),
        "{}",
        denied.stdout
    );
    assert!(
        !denied.stdout.contains("simulated result: ok"),
        "{}",
        denied.stdout
    );
    assert!(
        denied.stderr.contains("would be denied by the Blueprint"),
        "{}",
        denied.stderr
    );
    // ... and --grant-declared lets the real run go through while the Blueprint is written.
    let dev = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache2",
        "--grant-declared",
    ]);
    assert!(dev.ok, "{}", dev.stderr);
}
