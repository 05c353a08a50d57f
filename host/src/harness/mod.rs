//! The plugin test harness: run a plugin's actions in-process against scripted
//! capabilities — an exec that answers from a script, an in-memory location, given secrets —
//! so plugin logic (error paths included) is tested without any server.
//!
//! Cases are YAML (`coffer plugin test PLUGIN CASES.yaml`; see docs/plugin-authoring.md):
//!
//! ```yaml
//! cases:
//!   - name: backup dumps the listed database
//!     action: backup
//!     params: {databases: [shop]}
//!     secrets: {password: s3cret}
//!     exec:
//!       - {argv: "pg_dump **", stdout: "PGDMP fake"}
//!     expect:
//!       calls: ["pg_dump --format=custom **"]
//!       objects: {databases/shop.pgdump: "PGDMP fake"}
//! ```

pub use crate::cap::exec::scripted::{ExecCall, ExecScript, ScriptedExec};

use crate::cap::exec::ExecBackend;
use crate::cap::kube::KubeBackend;
use crate::cap::location::{BoundLocation, BoundLocations};
use crate::cap::secrets::SecretValues;
use crate::cap::{ActionScope, Actor, Backends, Grants, Lending};
use crate::engine::{CallError, EffectiveLimits, Engine, call_run, call_validate};
use crate::model::{ActionKind, ObjectRecord};
use crate::plugin::PluginBytes;
use crate::storage::Prefix;
use crate::storage::pipeline::{self, Counters, Sink};
use crate::wit::abi::types::ObjectRef;
use crate::wit::wit_plugin;
use anyhow::{Context, Result};
use coffer_manifest::Manifest;
use object_store::memory::InMemory;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub params: serde_json::Value,
    /// Secret values by name (the plugin gets handles, as always).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The Workload's env: it wins over the plugin's and pins servers (PGHOST, …).
    #[serde(default)]
    pub workload_env: BTreeMap<String, String>,
    /// Answers to the commands the plugin runs; a command with no answer fails.
    #[serde(default)]
    pub exec: Vec<ExecScript>,
    /// Objects of the restore point (restore, delete), by key.
    #[serde(default)]
    pub objects: BTreeMap<String, String>,
    /// Input artifacts; default: one per object, named by its key.
    #[serde(default)]
    pub artifacts: Option<Vec<ArtifactIn>>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactIn {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// Whether the action succeeds (default true; false when `error` is given).
    pub ok: Option<bool>,
    /// A substring of the error.
    pub error: Option<String>,
    /// The commands run, in order, as argv patterns (exactly these, no others).
    pub calls: Option<Vec<String>>,
    /// Objects written, by key: exact content, or null for "exists".
    pub objects: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// What a command received on stdin, by its argv pattern.
    #[serde(default)]
    pub stdin: BTreeMap<String, String>,
    /// Secrets each command got in its environment, by argv pattern: variable names.
    #[serde(default)]
    pub secret_env: BTreeMap<String, Vec<String>>,
    /// Objects (of the restore point given in `objects`, or written by the action) that
    /// must be gone afterwards: what a delete is tested with.
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// What one case did, and whether it matched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseReport {
    pub name: String,
    pub passed: bool,
    pub failures: Vec<String>,
    /// The result of the action: `ok` or the error.
    pub result: String,
    /// Every capability call, as `coffer describe actionset` shows them.
    pub trace: Vec<String>,
}

/// The params schemas `describe()` returns (derived from the plugin's params types when it
/// derives them), by action.
pub async fn described_schemas(
    engine: &Engine,
    plugin: &PluginBytes,
) -> Result<BTreeMap<String, Option<serde_json::Value>>> {
    let manifest = crate::plugin::inspect(plugin)?.manifest;
    let prepared = engine.prepare(plugin)?;
    let described = crate::engine::call_describe(&prepared, &Lending::detached(&manifest.name))
        .await
        .map_err(|e| anyhow::anyhow!("describe(): {e}"))?;
    described
        .actions
        .into_iter()
        .map(|a| {
            let schema = a
                .params_schema
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .with_context(|| {
                    format!("describe(): action {}: paramsSchema is not JSON", a.name)
                })?;
            Ok((a.name, schema))
        })
        .collect()
}

/// Actions whose paramsSchema in manifest.json differs from the one `describe()` derives.
pub async fn schema_drift(engine: &Engine, plugin: &PluginBytes) -> Result<Vec<String>> {
    let manifest = crate::plugin::inspect(plugin)?.manifest;
    let described = described_schemas(engine, plugin).await?;
    Ok(manifest
        .actions
        .iter()
        .filter(|a| {
            described
                .get(&a.name)
                .is_some_and(|d| d != &a.params_schema)
        })
        .map(|a| a.name.clone())
        .collect())
}

/// Run every case of `cases` against the plugin. A first report checks that manifest.json's
/// params schemas are the ones derived from the params types.
pub async fn run_cases(
    engine: &Engine,
    plugin: &PluginBytes,
    cases: &CaseFile,
) -> Result<Vec<CaseReport>> {
    let manifest = crate::plugin::inspect(plugin)?.manifest;
    let mut out = Vec::new();
    let drift = schema_drift(engine, plugin).await?;
    out.push(CaseReport {
        name: "manifest.json params schemas match the params types".into(),
        passed: drift.is_empty(),
        failures: drift
            .iter()
            .map(|a| format!("action {a}: manifest.json's paramsSchema differs from the one derived from the params type; run `coffer plugin schema PLUGIN --write manifest.json` and rebuild"))
            .collect(),
        result: if drift.is_empty() { "ok".into() } else { "drift".into() },
        trace: vec![],
    });
    for c in &cases.cases {
        out.push(run_case(engine, plugin, &manifest, c).await?);
    }
    Ok(out)
}

pub fn load_cases(path: &std::path::Path) -> Result<CaseFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))
}

/// The outcome of one action in the harness, before it is checked.
pub struct Run {
    pub result: Result<wit_plugin::ActionOutput, String>,
    pub scope: Arc<ActionScope>,
    pub exec: Arc<ScriptedExec>,
    pub store: Arc<InMemory>,
    pub bound: Arc<BoundLocation>,
}

/// Run one action with scripted capabilities under `grants` (`None`: the plugin is granted
/// what it declares, as `coffer plugin test` does).
pub async fn run_action(
    engine: &Engine,
    plugin: &PluginBytes,
    manifest: &Manifest,
    c: &Case,
    grants: Option<Grants>,
    exec: Arc<ScriptedExec>,
    kube: Arc<dyn KubeBackend>,
) -> Result<Run> {
    let store = Arc::new(InMemory::new());
    let prefix = "restorepoints/test/rp".to_string();
    // The restore point's objects go through the real data path, so the plugin reads them
    // exactly as it would from a Profile (checksums and all).
    let seed = Prefix {
        profile: "harness".into(),
        store: store.clone(),
        root: prefix,
        encryption: None,
        parts: None,
    };
    let mut expected = BTreeMap::new();
    for (key, content) in &c.objects {
        let src: wasmtime_wasi::p2::DynInputStream = Box::new(
            wasmtime_wasi::p2::pipe::MemoryInputPipe::new(content.clone().into_bytes()),
        );
        let counters = Counters {
            transfer: Arc::new(AtomicU64::new(0)),
            action: Arc::new(AtomicU64::new(0)),
        };
        let rec = pipeline::upload(src, &seed, key, Some(3), &counters, &Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("case {}: seeding object {key}: {e}", c.name))?;
        expected.insert(key.clone(), rec);
    }
    let kind = ActionKind::parse(&c.action);
    let access = kind.location_access(kind.needs_restore_point() || !c.objects.is_empty());
    let bound = Arc::new(BoundLocation::new(seed, access, Some(3), expected.clone()));
    let limits =
        EffectiveLimits::resolve(&Default::default(), &c.action).map_err(|e| anyhow::anyhow!(e))?;
    let lending = Lending::new(
        Actor {
            action: c.action.clone(),
            blueprint: "harness".into(),
            plugin: manifest.name.clone(),
            workload: "test".into(),
        },
        limits,
        grants.unwrap_or_else(|| Grants {
            declared: manifest.capabilities.clone(),
            granted: manifest.capabilities.clone(),
            plugin: manifest.name.clone(),
            blueprint: "harness".into(),
        }),
        SecretValues::from_values("the scripted workload", &c.secrets),
        BoundLocations(BTreeMap::from([("default".to_string(), bound.clone())])),
        Backends::default()
            .with::<Arc<dyn ExecBackend>>(exec.clone())
            .with(kube),
    );
    let artifacts: Vec<ArtifactIn> = c.artifacts.clone().unwrap_or_else(|| {
        c.objects
            .keys()
            .map(|k| ArtifactIn {
                name: k.clone(),
                key: k.clone(),
                metadata: BTreeMap::new(),
            })
            .collect()
    });
    let request = wit_plugin::ActionRequest {
        action: c.action.clone(),
        params: if c.params.is_null() {
            "{}".into()
        } else {
            c.params.to_string()
        },
        subject: ObjectRef {
            api_version: crate::model::API_VERSION.into(),
            kind: "Workload".into(),
            namespace: None,
            name: "test".into(),
        },
        locations: vec!["default".into()],
        input_artifacts: artifacts
            .iter()
            .map(|a| {
                let rec = expected.get(&a.key);
                wit_plugin::Artifact {
                    name: a.name.clone(),
                    location: "default".into(),
                    key: a.key.clone(),
                    size: rec.map_or(0, |r| r.size),
                    sha256: rec.map(|r| r.sha256.clone()),
                    metadata: a.metadata.clone().into_iter().collect(),
                }
            })
            .collect(),
        checkpoint: None,
    };
    let prepared = engine.prepare(plugin)?;
    let result = match call_validate(&prepared, &lending, &request).await {
        Err(CallError::Invalid(p)) => Err(format!("invalid request: {}", p.join("; "))),
        Err(e) => Err(e.to_string()),
        Ok(()) => call_run(&prepared, &lending, &request)
            .await
            .map_err(|e| e.to_string()),
    };
    // As an action ends anywhere: the guards still armed run.
    let unguarded = lending.scope.settle_guards().await;
    let result = match result {
        Ok(_) if !unguarded.is_empty() => Err(unguarded.join("; ")),
        r => r,
    };
    Ok(Run {
        result,
        scope: lending.scope.clone(),
        exec,
        store,
        bound,
    })
}

async fn run_case(
    engine: &Engine,
    plugin: &PluginBytes,
    manifest: &Manifest,
    c: &Case,
) -> Result<CaseReport> {
    let exec = Arc::new(ScriptedExec::new(c.exec.clone()).with_env(c.workload_env.clone()));
    let no_cluster = Arc::new(crate::cap::kube::NoCluster);
    let run = run_action(engine, plugin, manifest, c, None, exec, no_cluster).await?;
    let failures = check(c, &run).await;
    Ok(CaseReport {
        name: c.name.clone(),
        passed: failures.is_empty(),
        failures,
        result: match &run.result {
            Ok(_) => "ok".into(),
            Err(e) => e.clone(),
        },
        trace: trace_lines(&run.scope),
    })
}

/// The audit trail as lines.
pub fn trace_lines(scope: &ActionScope) -> Vec<String> {
    scope
        .records
        .lock()
        .unwrap()
        .audit
        .iter()
        .map(|a| {
            format!(
                "{:>6}ms {:<20} {} {} -> {} ({} ms)",
                a.at_ms, a.capability, a.target, a.args, a.result, a.duration_ms
            )
        })
        .collect()
}

async fn check(c: &Case, run: &Run) -> Vec<String> {
    let e = &c.expect;
    let mut f = Vec::new();
    let want_ok = e.ok.unwrap_or(e.error.is_none());
    match (&run.result, want_ok) {
        (Ok(_), false) => f.push("the action succeeded, but it should fail".to_string()),
        (Err(err), true) => f.push(format!("the action failed: {err}")),
        (Err(err), false) => {
            if let Some(want) = &e.error
                && !err.contains(want.as_str())
            {
                f.push(format!("the error {err:?} does not contain {want:?}"));
            }
        }
        (Ok(_), true) => {}
    }
    let calls = run.exec.calls.lock().unwrap().clone();
    if let Some(want) = &e.calls {
        let got: Vec<String> = calls.iter().map(|c| c.argv.join(" ")).collect();
        let matches = want.len() == calls.len()
            && want
                .iter()
                .zip(&calls)
                .all(|(p, c)| coffer_manifest::argv_matches(p, &c.argv));
        if !matches {
            f.push(format!(
                "commands run:\n    {}\n  expected:\n    {}",
                got.join("\n    "),
                want.join("\n    ")
            ));
        }
    }
    for (pattern, content) in &e.stdin {
        match calls
            .iter()
            .find(|c| coffer_manifest::argv_matches(pattern, &c.argv))
        {
            None => f.push(format!(
                "no command matching {pattern:?} was run (expect.stdin)"
            )),
            Some(call) => {
                let got = String::from_utf8_lossy(&call.stdin.lock().unwrap()).into_owned();
                // psql's stdin starts with the host's `\restrict <random key>` line; the
                // expectation is about what the plugin sent after it.
                let got = match got.strip_prefix("\\restrict ") {
                    Some(rest) => rest
                        .split_once('\n')
                        .map_or(String::new(), |(_, r)| r.to_string()),
                    None => got,
                };
                if &got != content {
                    f.push(format!(
                        "`{}` got stdin {got:?}, expected {content:?}",
                        call.argv.join(" ")
                    ));
                }
            }
        }
    }
    for (pattern, names) in &e.secret_env {
        match calls
            .iter()
            .find(|c| coffer_manifest::argv_matches(pattern, &c.argv))
        {
            None => f.push(format!(
                "no command matching {pattern:?} was run (expect.secretEnv)"
            )),
            Some(call) => {
                if &call.secret_env != names {
                    f.push(format!(
                        "`{}` got secrets in {:?}, expected {names:?}",
                        call.argv.join(" "),
                        call.secret_env
                    ));
                }
            }
        }
    }
    if let Ok(out) = &run.result {
        for (k, v) in &e.outputs {
            match out.outputs.iter().find(|(ok, _)| ok == k) {
                Some((_, got)) if got == v => {}
                Some((_, got)) => f.push(format!("output {k} is {got:?}, expected {v:?}")),
                None => f.push(format!("no output {k}")),
            }
        }
    }
    if let Some(want) = &e.objects {
        let written: Vec<ObjectRecord> = {
            let r = run.scope.records.lock().unwrap();
            let mut v: Vec<ObjectRecord> = Vec::new();
            for o in &r.objects {
                v.retain(|x| x.key != o.key);
                v.push(o.clone());
            }
            v
        };
        let got_keys: Vec<&str> = written.iter().map(|o| o.key.as_str()).collect();
        for (key, content) in want {
            let Some(rec) = written.iter().find(|o| &o.key == key) else {
                f.push(format!(
                    "object {key} was not written (written: {got_keys:?})"
                ));
                continue;
            };
            if let Some(content) = content {
                let mut buf = Vec::new();
                let read = match run.bound.prefix.path(&rec.stored_key) {
                    Ok(path) => pipeline::download(
                        run.store.as_ref(),
                        &path,
                        rec,
                        Sink::Buffer(&mut buf, 64 << 20),
                        None,
                        None,
                        pipeline::Pin::Any,
                    )
                    .await
                    .map(|_| ()),
                    Err(e) => Err(e),
                };
                match read {
                    Err(e) => f.push(format!("object {key}: {e}")),
                    Ok(()) if buf != content.as_bytes() => f.push(format!(
                        "object {key} holds {:?}, expected {content:?}",
                        String::from_utf8_lossy(&buf)
                    )),
                    Ok(()) => {}
                }
            }
        }
        for k in &got_keys {
            if !want.contains_key(*k) {
                f.push(format!(
                    "object {k} was written, but expect.objects does not list it"
                ));
            }
        }
    }
    for key in &e.deleted {
        let written = run
            .scope
            .records
            .lock()
            .unwrap()
            .objects
            .iter()
            .any(|o| &o.key == key);
        if !c.objects.contains_key(key) && !written {
            f.push(format!(
                "expect.deleted: {key} was never there (give it in the case's objects)"
            ));
            continue;
        }
        for stored in crate::storage::keys::stored_variants(key) {
            let Ok(path) = run.bound.prefix.path(&stored) else {
                continue;
            };
            if object_store::ObjectStoreExt::head(run.store.as_ref(), &path)
                .await
                .is_ok()
            {
                f.push(format!("object {key} still exists (as {stored})"));
            }
        }
    }
    f
}
