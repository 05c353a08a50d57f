//! Unit tests of the first-party plugins' logic, error paths included, through the plugin
//! test harness (scripted exec, in-memory location): plugins/<name>/tests/cases.yaml. And
//! the harness itself: an expectation that does not hold must fail its case.

use coffer::engine::Engine;
use coffer::harness::{self, CaseFile};
use coffer::plugin::PluginBytes;
use std::path::Path;

fn engine() -> Engine {
    Engine::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache")).unwrap()
}

fn builtin(name: &str) -> PluginBytes {
    PluginBytes::new(
        format!("builtin:{name}"),
        coffer::builtin::plugin(name).unwrap().to_vec(),
    )
}

async fn run_file(rt: &Engine, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name)
        .join("tests/cases.yaml");
    let cases = harness::load_cases(&path).unwrap();
    assert!(cases.cases.len() >= 6, "{name}: too few cases");
    let reports = harness::run_cases(rt, &builtin(name), &cases)
        .await
        .unwrap();
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| {
            format!(
                "{}: {}\n  {}",
                r.name,
                r.failures.join("\n  "),
                r.trace.join("\n  ")
            )
        })
        .collect();
    assert!(failed.is_empty(), "{name}:\n{}", failed.join("\n"));
}

#[tokio::test]
async fn first_party_plugins_pass_their_cases() {
    let rt = engine();
    for name in ["postgres-logical", "mysql-logical", "etcd", "redis"] {
        run_file(&rt, name).await;
    }
}

#[tokio::test]
async fn the_harness_fails_a_case_whose_expectation_does_not_hold() {
    let rt = engine();
    let cases: CaseFile = serde_yaml_ng::from_str(
        r#"
cases:
  - name: wrong command, wrong object, wrong output
    action: backup
    exec: [{argv: "redis-cli **", stdout: "REDIS0011 body"}]
    expect:
      calls: ["redis-cli -h elsewhere **"]
      objects: {dump.rdb: "other bytes"}
      outputs: {bytes: "1"}
  - name: expected to fail, but succeeds
    action: backup
    exec: [{argv: "redis-cli **", stdout: "REDIS0011 body"}]
    expect: {error: "boom"}
  - name: a command with no scripted answer fails the action
    action: backup
  - name: an object expected deleted that is still there, and one that never was
    action: restore
    params: {volume: redis-data}
    objects: {dump.rdb: "REDIS0011"}
    exec:
      - {argv: "coffer:write-file **"}
      - {argv: "redis-check-rdb **"}
      - {argv: "coffer:install-file **"}
    expect:
      deleted: [dump.rdb, nothing.rdb]
"#,
    )
    .unwrap();
    let r = harness::run_cases(&rt, &builtin("redis"), &cases)
        .await
        .unwrap();
    // First the schema check (redis derives its schemas and its manifest holds them).
    assert!(
        r[0].passed && r[0].name.contains("params schemas"),
        "{:?}",
        r[0]
    );
    let r = &r[1..];
    assert!(r.iter().all(|c| !c.passed));
    assert_eq!(r[0].failures.len(), 3, "{:?}", r[0].failures);
    assert!(r[1].failures[0].contains("should fail"));
    assert!(
        r[2].result
            .contains("the test script has no answer for `redis-cli")
    );
    assert_eq!(r[3].result, "ok", "{:?}", r[3]);
    assert!(
        r[3].failures
            .iter()
            .any(|f| f.contains("object dump.rdb still exists"))
            && r[3]
                .failures
                .iter()
                .any(|f| f.contains("nothing.rdb was never there")),
        "{:?}",
        r[3].failures
    );
}

/// The SDK's slow-path helpers, through the test plugin: std::io over process streams, a
/// small object written with `Write`, and errors with context.
#[tokio::test]
async fn sdk_io_adapters_and_error_context() {
    let rt = engine();
    let hostile = PluginBytes::new(
        "hostile".into(),
        std::fs::read(coffer_tests::test_plugin("hostile")).unwrap(),
    );
    let cases: CaseFile = serde_yaml_ng::from_str(
        r#"
cases:
  - name: stdin written with Write, stdout read with Read, object written with Write
    action: backup
    params: {mode: io-adapters}
    exec: [{argv: "cat", stdout: "from cat\n"}]
    expect:
      stdin: {"cat": "hello via io\n"}
      objects: {io.txt: "cat said: from cat\n"}
  - name: context is prefixed and the error kind kept
    action: backup
    params: {mode: context-error}
    exec: [{argv: "false", exit: 1, stderr: "nope"}]
    expect:
      error: "step one: exited with code 1: nope"
"#,
    )
    .unwrap();
    let r = harness::run_cases(&rt, &hostile, &cases).await.unwrap();
    for c in &r {
        assert!(c.passed, "{}: {:?} ({})", c.name, c.failures, c.result);
    }
}

/// The `#[cfg(test)]` unit tests inside the first-party plugins (batch encoding, parsers):
/// `cargo test --lib` of the plugins workspace for this machine, in its own target dir.
#[test]
fn the_plugins_own_unit_tests_pass() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let mut cmd = coffer_tests::cargo();
    cmd.args(["test", "--lib", "--locked", "--workspace", "--target-dir"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-unit-tests"))
        .current_dir(&plugins);
    let out = cmd.output().expect("running cargo test in plugins/");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "plugins' unit tests:\n{text}");
    // Not vacuous: the tests this is for ran.
    assert!(
        text.contains("varints_round_trip ... ok")
            && text.contains("status_json_of_medusa_0_31_is_read ... ok"),
        "{text}"
    );
}
