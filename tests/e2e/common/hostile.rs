//! The hostile test plugin under a Blueprint, in-process: shared by the sandbox tests and the
//! attack tests (`#[path]`-included, since the test support crate cannot depend on coffer).

use coffer::action::{ActionRequest, Coffer};
use coffer::home::Home;
use coffer::model::{ActionSet, Phase};
use coffer_tests::{files_containing, random_hex, test_plugin};
use std::path::Path;

pub struct Fixture {
    pub coffer: Coffer,
    pub home: tempfile::TempDir,
    pub secret: String,
    _secret_file: tempfile::NamedTempFile,
}

/// The hostile plugin (or another component file) under a Blueprint that grants `grants`
/// (YAML mapping entries, e.g. `exec: ["cat **"], unsafeArgs: true`) besides the location
/// and the `password` secret, with `limits`.
pub async fn fixture_with(plugin: &Path, grants: &str, limits: &str) -> Fixture {
    let home = tempfile::tempdir().unwrap();
    let coffer = Coffer::open(Home::resolve(Some(home.path().to_path_buf())).unwrap())
        .await
        .unwrap();
    let secret = format!("s3cret-{}", random_hex(10));
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), &secret).unwrap();
    // The test's grants, then the location and the secret every fixture has.
    let grants = if grants.trim().is_empty() {
        String::new()
    } else {
        format!("{grants}, ")
    };
    let yaml = format!(
        r#"
apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {{name: hostile}}
spec:
  plugin: {{path: {plugin}}}
  grants: {{{grants}location: [read, write, delete], secrets: [password]}}
  limits: {limits}
---
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {{name: victim}}
spec:
  blueprint: hostile
  secrets:
    password: {{file: {secret_file}}}
"#,
        plugin = plugin.display(),
        secret_file = secret_file.path().display(),
    );
    coffer.apply("test", &yaml).unwrap();
    Fixture {
        coffer,
        home,
        secret,
        _secret_file: secret_file,
    }
}

pub async fn fixture(grants: &str, limits: &str) -> Fixture {
    fixture_with(&test_plugin("hostile"), grants, limits).await
}

/// Run `action` of the hostile plugin in `mode` with extra params.
pub async fn run(f: &Fixture, action: &str, mode: &str, extra: serde_json::Value) -> ActionSet {
    let mut params = serde_json::Map::new();
    params.insert("mode".into(), mode.into());
    if let serde_json::Value::Object(m) = extra {
        params.extend(m);
    }
    let req = ActionRequest {
        action: action.into(),
        workload: Some("victim".into()),
        params,
        ..Default::default()
    };
    let p = f.coffer.prepare(req).await.unwrap();
    f.coffer.run(&p).await.unwrap()
}

pub async fn backup(f: &Fixture, mode: &str) -> ActionSet {
    run(f, "backup", mode, serde_json::Value::Null).await
}

pub fn error_of(a: &ActionSet) -> &str {
    assert_eq!(a.status.phase, Phase::Failed, "{a:?}");
    assert!(a.status.restore_point.is_none());
    a.status.error.as_deref().unwrap()
}

/// The host still works: a good action completes and records a restore point. And whatever
/// the plugin did, the secret is nowhere in the state dir (catalog, location).
pub async fn still_healthy(f: &Fixture) {
    assert!(
        files_containing(f.home.path(), f.secret.as_bytes()).is_empty(),
        "secret in the state dir"
    );
    let ok = backup(f, "ok").await;
    assert_eq!(ok.status.phase, Phase::Completed, "{:?}", ok.status.error);
    assert!(ok.status.restore_point.is_some());
}
