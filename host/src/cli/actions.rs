//! backup / restore / delete from the command line.

use super::{OutputFormat, output, progress};
use crate::action::{ActionRequest, Coffer};
use crate::model::ActionKind;
use crate::model::{ActionSet, Phase};
use anyhow::{Result, anyhow, bail};
use std::process::ExitCode;

/// Build a request from CLI arguments; `--param k=v` values are JSON when they parse as JSON.
pub fn request(
    action: ActionKind,
    workload: Option<String>,
    profile: Option<String>,
    restore_point: Option<String>,
    params: &[String],
) -> Result<ActionRequest> {
    let mut map = serde_json::Map::new();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param {p:?}: write it as key=value"))?;
        if k.is_empty() {
            bail!("--param {p:?}: the key is empty");
        }
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(ActionRequest {
        action,
        workload,
        profile,
        restore_point,
        params: map,
        ..Default::default()
    })
}

pub async fn run(
    coffer: &Coffer,
    req: ActionRequest,
    out: Option<OutputFormat>,
) -> Result<ExitCode> {
    let prepared = coffer.prepare(req).await?;
    follow_and_report(coffer, prepared, out).await
}

/// Run a prepared action with a progress display; print how it ended.
pub async fn follow_and_report(
    coffer: &Coffer,
    prepared: crate::action::PreparedAction,
    out: Option<OutputFormat>,
) -> Result<ExitCode> {
    let what = match (&prepared.request.workload, &prepared.request.restore_point) {
        (Some(w), _) => format!("{} {w}", prepared.request.action),
        (None, Some(rp)) => format!("{} {rp}", prepared.request.action),
        _ => prepared.request.action.to_string(),
    };
    // SIGTERM (a service manager stopping coffer, a container shutting down) ends the
    // action as an interrupt does: its guards run and it is recorded Failed.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let finished: ActionSet = tokio::select! {
        r = progress::follow(what.clone(), prepared.scope(), coffer.run(&prepared)) => r?,
        _ = tokio::signal::ctrl_c() => {
            progress::clear();
            coffer.abandon(&prepared, "cancelled by the user (interrupt)").await?
        }
        _ = term.recv() => {
            progress::clear();
            coffer.abandon(&prepared, "stopped by SIGTERM").await?
        }
    };
    if let Some(format) = out {
        output::print_one(&finished, format)?;
    }
    let took = took(&finished);
    match finished.status.phase {
        Phase::Completed => {
            if out.is_none() {
                let bytes = indicatif::HumanBytes(finished.status.bytes);
                match &finished.status.restore_point {
                    Some(rp) => out!("{what}: completed in {took}, {bytes}; RestorePoint {rp}"),
                    None => out!("{what}: completed in {took}, {bytes}"),
                }
                if let Some(prev) = finished.status.outputs.get("previous") {
                    out!(
                        "kept what the restore replaced as {prev}; remove it once the restore is checked"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let why = finished
                .status
                .error
                .clone()
                .unwrap_or_else(|| "unknown error".into());
            eprintln!(
                "error: {what} failed: {why} (ActionSet {})",
                finished.metadata.name
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn took(a: &ActionSet) -> String {
    use time::format_description::well_known::Rfc3339;
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| time::OffsetDateTime::parse(s, &Rfc3339).ok())
    };
    match (parse(&a.status.start_time), parse(&a.status.end_time)) {
        (Some(s), Some(e)) => format!("{:.1}s", (e - s).as_seconds_f64()),
        _ => "?".into(),
    }
}
