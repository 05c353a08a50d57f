//! `coffer plugin test`: a plugin's cases against scripted capabilities (the harness).

use super::OutputFormat;
use crate::engine::Engine;
use crate::harness;
use crate::home::Home;
use crate::plugin::PluginBytes;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A plugin named on the command line: a .wasm file, or `builtin:NAME`.
pub fn load_plugin(file: &str) -> Result<PluginBytes> {
    match file.strip_prefix("builtin:") {
        Some(name) => {
            let bytes = crate::builtin::plugin(name).with_context(|| {
                let names: Vec<&str> = crate::builtin::BUILTIN_PLUGINS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                format!(
                    "no built-in plugin {name:?} (built in: {})",
                    names.join(", ")
                )
            })?;
            Ok(PluginBytes::new(file.to_string(), bytes.to_vec()))
        }
        None => Ok(PluginBytes::new(
            file.to_string(),
            std::fs::read(file).with_context(|| format!("reading {file}"))?,
        )),
    }
}

pub async fn test(
    home: Option<PathBuf>,
    plugin: &str,
    cases: &Path,
    verbose: bool,
    output: OutputFormat,
) -> Result<ExitCode> {
    let p = load_plugin(plugin)?;
    let cases = harness::load_cases(cases)?;
    let engine = Engine::new(Home::resolve(home)?.cache_dir())?;
    let reports = harness::run_cases(&engine, &p, &cases).await?;
    let failed = reports.iter().filter(|r| !r.passed).count();
    match output {
        OutputFormat::Table => {
            for r in &reports {
                out!("{} {}", if r.passed { "PASS" } else { "FAIL" }, r.name);
                for f in &r.failures {
                    out!("       {}", f.replace('\n', "\n       "));
                }
                if verbose || !r.passed {
                    out!("       result: {}", r.result);
                    for t in &r.trace {
                        out!("       {t}");
                    }
                }
            }
            out!(
                "{} passed, {failed} failed ({} cases)",
                reports.len() - failed,
                reports.len()
            );
        }
        OutputFormat::Json => out!("{}", serde_json::to_string_pretty(&reports)?),
        OutputFormat::Yaml => out_raw!("{}", serde_yaml_ng::to_string(&reports)?),
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `coffer plugin run`: one action of a plugin file against a local Workload, with every
/// capability call printed as it happens. `--dry-run` touches nothing.
pub struct RunArgs {
    pub plugin: String,
    pub action: String,
    pub workload: Option<String>,
    pub from: Option<String>,
    pub allow_other_workload: bool,
    pub profile: Option<String>,
    pub params: Vec<String>,
    pub grant_declared: bool,
    pub dry_run: bool,
}

pub async fn run(home: Option<PathBuf>, a: RunArgs) -> Result<ExitCode> {
    let coffer = crate::action::Coffer::open(Home::resolve(home)?).await?;
    let mut req = super::actions::request(
        crate::model::ActionKind::parse(&a.action),
        a.workload.clone(),
        a.profile.clone(),
        a.from.clone(),
        &a.params,
    )?;
    req.plugin_override = Some(match a.plugin.strip_prefix("builtin:") {
        Some(name) => crate::model::PluginRef {
            builtin: Some(name.to_string()),
            ..Default::default()
        },
        None => crate::model::PluginRef {
            path: Some(
                std::fs::canonicalize(&a.plugin)
                    .with_context(|| format!("reading {}", a.plugin))?,
            ),
            ..Default::default()
        },
    });
    req.grant_declared = a.grant_declared;
    req.allow_other_workload = a.allow_other_workload;
    if a.dry_run {
        return dry_run(&coffer, &a, req).await;
    }
    let prepared = coffer.prepare(req).await?;
    let hook: crate::cap::AuditHook = Arc::new(|e: &crate::model::AuditEntry| {
        let line = trace_line(e);
        super::progress::suspend(|| eprintln!("{line}"));
    });
    let _ = prepared.scope().on_audit.set(hook);
    eprintln!(
        "running {} of plugin {} ({}) on workload {} — ActionSet {}",
        a.action, prepared.manifest.name, a.plugin, prepared.workload.metadata.name, prepared.name
    );
    super::actions::follow_and_report(&coffer, prepared, None).await
}

fn trace_line(e: &crate::model::AuditEntry) -> String {
    let bytes = if e.bytes > 0 {
        format!(" {}", indicatif::HumanBytes(e.bytes))
    } else {
        String::new()
    };
    format!(
        "  {:>7}ms  {:<18} {} {} -> {} ({} ms{bytes})",
        e.at_ms, e.capability, e.target, e.args, e.result, e.duration_ms
    )
}

/// Check params and grants, then run the plugin against a simulated workload (every
/// command exits 0 with no output; an in-memory location; placeholder secrets) to show the
/// calls it would make. Nothing is recorded and nothing runs for real.
async fn dry_run(
    coffer: &crate::action::Coffer,
    a: &RunArgs,
    req: crate::action::ActionRequest,
) -> Result<ExitCode> {
    let input = req
        .restore_point
        .as_deref()
        .map(|n| coffer.restore_point(n))
        .transpose()?;
    if req.action.needs_restore_point() && input.is_none() {
        anyhow::bail!(
            "{} needs a restore point: give it with --from RESTOREPOINT (`coffer get restorepoints` lists them)",
            req.action
        );
    }
    let wname = match (&req.workload, &input) {
        (Some(w), _) => w.clone(),
        (None, Some(rp)) => rp.spec.workload.clone(),
        _ => anyhow::bail!("--dry-run needs --workload (or --from for delete)"),
    };
    let workload = coffer.workload(&wname)?;
    let (blueprint, _) = coffer.blueprint(&workload.spec.blueprint)?;
    let plugin = load_plugin(&a.plugin)?;
    let manifest = crate::plugin::inspect(&plugin)?.manifest;
    let granted = if req.grant_declared {
        manifest.capabilities.clone()
    } else {
        blueprint.spec.grants.clone()
    };
    let overrides = serde_json::Value::Object(req.params.clone());
    let params = crate::action::merge_params(
        &[
            blueprint.spec.params.get(&a.action),
            workload.spec.params.get(&a.action),
            Some(&overrides),
        ],
        &a.action,
    )?;
    out!(
        "plugin:   {} {} ({})",
        manifest.name,
        manifest.version,
        a.plugin
    );
    out!("workload: {wname} (Blueprint {})", blueprint.metadata.name);
    out!("action:   {}", a.action);
    out!("params:   {params}");
    out!(
        "grants ({}):",
        if req.grant_declared {
            "--grant-declared: what the plugin declares"
        } else {
            "the Blueprint's"
        }
    );
    super::output::grants_table(&manifest.capabilities, &granted);
    if manifest.action(&a.action).is_none() {
        anyhow::bail!("plugin {} has no action {:?}", manifest.name, a.action);
    }
    let case = harness::Case {
        name: "dry run".into(),
        action: a.action.clone(),
        params,
        secrets: workload
            .spec
            .secrets
            .keys()
            .map(|k| (k.clone(), format!("<secret {k}>")))
            .collect(),
        workload_env: workload.spec.env.clone(),
        exec: vec![],
        objects: input
            .iter()
            .flat_map(|rp| rp.spec.artifacts.iter())
            .map(|art| (art.key.clone(), String::new()))
            .collect(),
        artifacts: input.as_ref().map(|rp| {
            rp.spec
                .artifacts
                .iter()
                .map(|art| harness::ArtifactIn {
                    name: art.name.clone(),
                    key: art.key.clone(),
                    metadata: art.metadata.clone(),
                })
                .collect()
        }),
        expect: Default::default(),
    };
    let exec = Arc::new(harness::ScriptedExec::permissive().with_env(workload.spec.env.clone()));
    let engine = coffer.engine()?;
    let no_cluster = Arc::new(crate::cap::kube::NoCluster);
    // Simulated under the grants the real run would have, so a call they refuse is refused
    // here too, and the plugin meets the denial as it would for real.
    let grants = crate::cap::Grants {
        declared: manifest.capabilities.clone(),
        granted: granted.clone(),
        plugin: manifest.name.clone(),
        blueprint: blueprint.metadata.name.clone(),
    };
    let run = harness::run_action(
        engine,
        &plugin,
        &manifest,
        &case,
        Some(grants),
        exec,
        no_cluster,
    )
    .await?;
    out!(
        "calls the plugin makes when every command succeeds with no output (simulated; nothing ran):"
    );
    let mut denied = 0;
    for e in run.scope.records.lock().unwrap().audit.iter() {
        let refused = e.result.starts_with("denied");
        denied += usize::from(refused);
        out!(
            "{}{}",
            trace_line(e),
            if refused { "   <- DENIED" } else { "" }
        );
    }
    match &run.result {
        Ok(_) if denied == 0 => out!("simulated result: ok"),
        Ok(_) => out!(
            "simulated result: ok, though {denied} call(s) were denied (the plugin carried on without them)"
        ),
        Err(e) => out!(
            "simulated result: failed: {e} (the simulated commands succeed with no output; the plugin may refuse that)"
        ),
    }
    if let Err(e) = &run.result
        && e.starts_with("invalid request")
    {
        eprintln!("error: the plugin's validate() refused the params: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if denied > 0 {
        eprintln!(
            "error: {denied} call(s) would be denied by {}; grant them in the Blueprint's spec.grants (or run with --grant-declared while writing it)",
            if a.grant_declared {
                "what the plugin declares"
            } else {
                "the Blueprint"
            }
        );
    }
    // A failure of the simulation itself is information, not a verdict: commands there
    // answer with no output, which a careful plugin may well refuse.
    Ok(if denied == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `coffer plugin schema`: the params schemas `describe()` returns (derived from the params
/// types), printed, or written into a manifest.json.
pub async fn schema(home: Option<PathBuf>, plugin: &str, write: Option<&Path>) -> Result<ExitCode> {
    let p = load_plugin(plugin)?;
    let engine = Engine::new(Home::resolve(home)?.cache_dir())?;
    let schemas = harness::described_schemas(&engine, &p).await?;
    let Some(path) = write else {
        out!("{}", serde_json::to_string_pretty(&schemas)?);
        return Ok(ExitCode::SUCCESS);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let actions = doc
        .get_mut("actions")
        .and_then(|a| a.as_array_mut())
        .with_context(|| format!("{} has no actions list", path.display()))?;
    let mut changed = 0;
    for a in actions.iter_mut() {
        let Some(name) = a.get("name").and_then(|n| n.as_str()).map(String::from) else {
            continue;
        };
        if let (Some(Some(s)), Some(obj)) = (schemas.get(&name), a.as_object_mut())
            && obj.get("paramsSchema") != Some(s)
        {
            obj.insert("paramsSchema".into(), s.clone());
            changed += 1;
        }
    }
    std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(&doc)?))
        .with_context(|| format!("writing {}", path.display()))?;
    out!(
        "{}: {changed} action(s) updated; rebuild the plugin to embed it",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
