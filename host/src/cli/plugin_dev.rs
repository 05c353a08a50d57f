//! `coffer plugin test`: a plugin's cases against scripted capabilities (the harness).

use super::OutputFormat;
use crate::harness;
use crate::home::Home;
use crate::plugin::PluginBytes;
use crate::runtime::Runtime;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    let runtime = Runtime::new(Home::resolve(home)?.cache_dir())?;
    let reports = harness::run_cases(&runtime, &p, &cases).await?;
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
