//! The JSON API of the cluster dashboard under `/api/v1/`: the resources as the API server
//! holds them (what `kubectl get -o json` shows), limited to what the viewer may list, and
//! actions started as ActionSets the viewer may create.

use super::ClusterUi;
use super::access::Viewer;
use super::read;
use super::start::{Refusal, Start, start};
use crate::ui::api::error;
use crate::ui::kube_auth::Ask;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use std::sync::Arc;

fn failed(e: anyhow::Error) -> Response {
    error(
        StatusCode::BAD_GATEWAY,
        format!("{e:#} (is the API server reachable?)"),
    )
}

fn answer<T: serde::Serialize>(r: anyhow::Result<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

pub async fn get_applications(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    answer(read::applications(&ui, &v).await)
}

pub async fn get_restorepoints(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    answer(read::restore_points(&ui, &v).await)
}

pub async fn get_actionsets(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    answer(read::action_sets(&ui, &v).await)
}

pub async fn get_policies(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    match read::policies(&ui, &v).await {
        Ok(Some(p)) => Json(p).into_response(),
        Ok(None) => error(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not list policies.coffer.dev in namespace {}; ask for ClusterRole coffer-viewer there",
                v.user.name, ui.config_ns
            ),
        ),
        Err(e) => failed(e),
    }
}

pub async fn get_actionset(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match super::one_action_set(&ui, &v, &ns, &name).await {
        Ok(a) => Json(a).into_response(),
        Err(r) => refusal(r),
    }
}

pub fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Forbidden(m) => error(StatusCode::FORBIDDEN, m),
        Refusal::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Refusal::Missing(m) => error(StatusCode::NOT_FOUND, m),
        Refusal::Failed(e) => failed(e),
    }
}

fn started(r: Result<crate::k8s::kinds::ActionSetResource, Refusal>) -> Response {
    match r {
        Ok(a) => (StatusCode::ACCEPTED, Json(a)).into_response(),
        Err(r) => refusal(r),
    }
}

pub async fn post_backup(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, kind, name)): Path<(String, String, String)>,
) -> Response {
    let s = Start {
        action: "backup".into(),
        namespace: ns,
        workload: format!("{kind}/{name}"),
        ..Default::default()
    };
    started(start(&ui, &v, s).await)
}

/// `{"restorePoint": NAME, "params": {...}, "targetNamespace": NS}` (the last optional).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestoreBody {
    /// A RestorePoint, or `at`: the newest taken at or before that time.
    #[serde(default)]
    restore_point: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    target_namespace: Option<String>,
}

pub async fn post_restore(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let b: RestoreBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the body: {e}; send {{\"restorePoint\": NAME, \"params\": {{...}}, \"targetNamespace\": NS}}"
                ),
            );
        }
    };
    let restore_point = match (b.restore_point, b.at) {
        (Some(rp), None) => rp,
        (None, Some(at)) => {
            let workload = match super::start::subject(&kind, &name) {
                Ok(w) => w,
                Err(r) => return refusal(r),
            };
            match super::start::restore_point_at(&ui, &v, &ns, &workload, &at).await {
                Ok(c) => c.name,
                Err(r) => return refusal(r),
            }
        }
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give restorePoint (a RestorePoint's name) or at (a time: the newest RestorePoint taken at or before it), not both",
            );
        }
    };
    let s = Start {
        action: "restore".into(),
        namespace: ns,
        workload: format!("{kind}/{name}"),
        restore_point: Some(restore_point),
        target_namespace: b.target_namespace.filter(|t| !t.is_empty()),
        params: b.params,
    };
    started(start(&ui, &v, s).await)
}

/// Whether `v` may read ActionSet `ns/name`.
pub async fn may_get(ui: &ClusterUi, v: &Viewer, ns: &str, name: &str) -> Result<(), Refusal> {
    let ask = Ask {
        verb: "get",
        resource: "actionsets",
        namespace: Some(ns),
        name: Some(name),
    };
    match ui.access.may(v, &ask).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(Refusal::Forbidden(why)),
        Err(e) => Err(Refusal::Failed(e)),
    }
}
