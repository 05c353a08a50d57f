//! The JSON API under `/api/v1/`: the same documents as the CLI's `-o json`, and actions
//! started the way the CLI starts them, each answered with the ActionSet it created.

use super::Ui;
use crate::action::{ActionRequest, Coffer};
use crate::model::{ActionKind, Compliance, Kind, RestorePoint, Workload};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One application: a Workload, its Blueprint, how protected it is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub name: String,
    pub blueprint: String,
    /// `Compliant`, `NonCompliant` or `Unmanaged`: NonCompliant when any Policy says so.
    pub compliance: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    pub policies: Vec<String>,
    pub restore_points: usize,
}

pub fn applications(coffer: &Coffer) -> anyhow::Result<Vec<Application>> {
    let now = crate::scheduler::clock::from_env().now();
    let rows: Vec<Compliance> = crate::scheduler::compliance::compliance(coffer, now)?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for rp in coffer.catalog.list::<RestorePoint>(Kind::RestorePoint)? {
        *counts.entry(rp.spec.workload).or_default() += 1;
    }
    let mut by_workload: HashMap<&str, Vec<&Compliance>> = HashMap::new();
    for r in &rows {
        by_workload.entry(r.workload.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for w in coffer.catalog.list::<Workload>(Kind::Workload)? {
        let mine = by_workload.remove(w.name()).unwrap_or_default();
        let bad: Vec<String> = mine
            .iter()
            .filter(|r| r.state == "NonCompliant")
            .map(|r| {
                format!(
                    "{}: {}{}",
                    r.policy.as_deref().unwrap_or("-"),
                    r.reason.as_deref().unwrap_or("NonCompliant"),
                    r.message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let policies: Vec<String> = mine.iter().filter_map(|r| r.policy.clone()).collect();
        let compliance = if policies.is_empty() {
            "Unmanaged"
        } else if bad.is_empty() {
            "Compliant"
        } else {
            "NonCompliant"
        };
        out.push(Application {
            name: w.name().to_string(),
            blueprint: w.spec.blueprint.clone(),
            compliance: compliance.into(),
            reasons: bad,
            policies,
            restore_points: counts.get(w.name()).copied().unwrap_or(0),
        });
    }
    // Anything failing first.
    out.sort_by_key(|a| (a.compliance != "NonCompliant", a.name.clone()));
    Ok(out)
}

pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message.to_string()})),
    )
        .into_response()
}

fn internal(e: anyhow::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

pub async fn get_applications(State(ui): State<Arc<Ui>>) -> Response {
    match applications(&ui.coffer) {
        Ok(a) => Json(a).into_response(),
        Err(e) => internal(e),
    }
}

fn list(ui: &Ui, kind: Kind) -> Response {
    match ui.coffer.catalog.list::<serde_json::Value>(kind) {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

pub async fn get_restorepoints(State(ui): State<Arc<Ui>>) -> Response {
    list(&ui, Kind::RestorePoint)
}

pub async fn get_actionsets(State(ui): State<Arc<Ui>>) -> Response {
    list(&ui, Kind::ActionSet)
}

pub async fn get_policies(State(ui): State<Arc<Ui>>) -> Response {
    list(&ui, Kind::Policy)
}

pub async fn get_actionset(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> Response {
    match ui.coffer.action_set(&name) {
        Ok(a) => Json(a).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, format!("{e:#}")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreBody {
    pub restore_point: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

pub async fn post_backup(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> Response {
    start(&ui, ActionKind::Backup, name, None, Default::default()).await
}

pub async fn post_restore(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    Json(body): Json<RestoreBody>,
) -> Response {
    start(
        &ui,
        ActionKind::Restore,
        name,
        Some(body.restore_point),
        body.params,
    )
    .await
}

/// Prepare the action (so a bad request is answered with the reason and nothing runs),
/// then run it in the background; the answer is the ActionSet as it starts.
pub async fn start(
    ui: &Arc<Ui>,
    action: ActionKind,
    workload: String,
    restore_point: Option<String>,
    params: serde_json::Map<String, serde_json::Value>,
) -> Response {
    match launch(ui, action, workload, restore_point, params).await {
        Ok(set) => (StatusCode::ACCEPTED, Json(set)).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    }
}

pub async fn launch(
    ui: &Arc<Ui>,
    action: ActionKind,
    workload: String,
    restore_point: Option<String>,
    params: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<crate::model::ActionSet> {
    if ui
        .coffer
        .catalog
        .get::<Workload>(Kind::Workload, &workload)?
        .is_none()
    {
        anyhow::bail!("there is no application (Workload) {workload}");
    }
    let req = ActionRequest {
        action,
        workload: Some(workload),
        restore_point,
        params,
        ..Default::default()
    };
    run_in_background(ui, req).await
}

/// Prepare `req` (a refusal is the error, and nothing runs), then run it in the
/// background; the ActionSet as it starts.
pub async fn run_in_background(
    ui: &Arc<Ui>,
    req: ActionRequest,
) -> anyhow::Result<crate::model::ActionSet> {
    let prepared = ui.coffer.prepare(req).await?;
    let name = prepared.name.clone();
    let coffer = ui.coffer.clone();
    tokio::spawn(async move {
        if let Err(e) = coffer.run(&prepared).await {
            tracing::error!(actionset = %prepared.name, error = %format!("{e:#}"), "action failed");
        }
    });
    ui.coffer.action_set(&name)
}

/// Verify a restore point's objects against its manifest (what `coffer verify` checks
/// first; [`plugin_verify`] is the rest).
pub async fn verify(ui: &Ui, name: &str) -> anyhow::Result<crate::storage::ops::VerifyReport> {
    let c = &ui.coffer;
    let rp = c.restore_point(name)?;
    let (profile, _) = c.profile(&rp.spec.profile)?;
    let loc = crate::storage::Location::from_profile(&profile, &c.credentials)?;
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    crate::storage::ops::verify(&loc, c.manifest_key()?, &rp, bytes).await
}

/// When the restore point's plugin checks its own data (an action `verify`, e.g.
/// pgBackRest's repository), start that check; None when it has none.
pub async fn plugin_verify(
    ui: &Arc<Ui>,
    name: &str,
) -> anyhow::Result<Option<crate::model::ActionSet>> {
    let rp = ui.coffer.restore_point(name)?;
    if !ui.coffer.plugin_verifies(&rp)? {
        return Ok(None);
    }
    let req = ActionRequest {
        action: ActionKind::Other("verify".into()),
        restore_point: Some(name.to_string()),
        ..Default::default()
    };
    run_in_background(ui, req).await.map(Some)
}
