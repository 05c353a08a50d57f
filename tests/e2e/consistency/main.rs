//! Application-consistent backups (issue 14): plugin ABI 0.2.0 beside 0.1.0, guards that
//! run on any end of an action (and for a runner that died), and the quiesce window with its
//! limit — on a real loop-mounted filesystem frozen with `fsfreeze`.

use coffer_tests::cli::Cli;
use std::path::Path;

mod abi;
mod fsfreeze;
mod guards;
mod hooks;
mod mysql;
mod postgres;

fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

/// The hostile test plugin's Blueprint `name`, granted `exec` (with any arguments: the
/// test's paths are made at run time), and Workload `name` on it.
fn hostile(c: &Cli, name: &str, exec: &[&str], limits: &str) {
    let exec: Vec<String> = exec.iter().map(|e| format!("\"{e}\"")).collect();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: {name}}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    exec: [{}]\n    unsafeArgs: true\n    location: [read, write, delete]\n  limits: {{{limits}}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec: {{blueprint: {name}}}\n",
        coffer_tests::test_plugin("hostile").display(),
        exec.join(", ")
    ));
    assert!(applied.ok, "{}", applied.stderr);
}

/// The only ActionSet of a state dir whose name starts with `prefix`.
fn action_set(c: &Cli, action: &str) -> serde_json::Value {
    let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
    sets.as_array()
        .unwrap()
        .iter()
        .find(|a| a["spec"]["action"] == action)
        .cloned()
        .unwrap_or_else(|| panic!("no {action} ActionSet in {sets:#}"))
}
