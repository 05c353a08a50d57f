//! End-to-end: the mysql-logical, etcd and redis plugins through the `coffer` CLI against
//! real MariaDB 10.11, etcd 3.4 and Redis 7 servers. Restored data must equal the original;
//! a server that is down, bad credentials, a tool missing from PATH and bad params each fail
//! with a reason and record nothing.

use coffer_tests::cli::{Cli, Run};
use coffer_tests::random_hex;
use coffer_tests::servers::{Etcd, MariaDb, Redis};
use std::path::Path;

mod etcd;
mod kafka;
mod kafka_chain;
mod kafka_stream;
mod medusa;
mod mysql;
mod pgbackrest;
mod pgbackrest_profile;
mod plugin_run;
mod redis;
mod snapshots;

fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

/// A Workload YAML: blueprint, env, an optional password file, params per action (JSON).
fn workload(
    name: &str,
    blueprint: &str,
    env: &[(&str, &str)],
    pwfile: Option<&Path>,
    params: &str,
) -> String {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}: \"{v}\"")).collect();
    let secrets = pwfile
        .map(|f| format!("  secrets: {{password: {{file: {}}}}}\n", f.display()))
        .unwrap_or_default();
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  blueprint: {blueprint}\n  env: {{{}}}\n{secrets}  params: {params}\n",
        env.join(", ")
    )
}

fn password_file(dir: &Path, pw: &str) -> std::path::PathBuf {
    let f = dir.join(format!("pw-{}", random_hex(4)));
    std::fs::write(&f, format!("{pw}\n")).unwrap();
    f
}

fn restore_point_of(r: &Run) -> String {
    assert!(r.ok, "action failed:\n{}\n{}", r.stdout, r.stderr);
    r.json()["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn restore_point_count(c: &Cli) -> usize {
    c.ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .len()
}

/// The action fails, the message has `needle`, and no RestorePoint appeared.
fn fails_with(c: &Cli, args: &[&str], needle: &str) {
    let before = restore_point_count(c);
    let r = c.run(args);
    assert!(!r.ok, "coffer {args:?} succeeded:\n{}", r.stdout);
    assert!(
        r.stderr.contains(needle),
        "coffer {args:?}: expected {needle:?} in:\n{}",
        r.stderr
    );
    assert_eq!(
        restore_point_count(c),
        before,
        "a failed action recorded a RestorePoint"
    );
}
