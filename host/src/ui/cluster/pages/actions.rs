//! Actions: the list, one ActionSet (progress, error, audit trail, plugin logs), and its
//! live progress and log lines as server-sent events.

use super::{action_path, app_path, failed, page, refused};
use crate::k8s::kinds::{ActionSetResource, status};
use crate::model::Phase;
use crate::ui::cluster::access::Viewer;
use crate::ui::cluster::read;
use crate::ui::cluster::{ClusterUi, one_action_set};
use crate::ui::pages::{Since, badge, bytes, esc, records, table, time, with_logs};
use axum::extract::{Extension, Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

pub(super) const ACTION_HEAD: &[&str] = &[
    "ActionSet",
    "Namespace",
    "Action",
    "Workload",
    "Phase",
    "Created",
    "Bytes",
];

pub(super) fn action_row(a: &ActionSetResource) -> Vec<String> {
    let s = status(a);
    vec![
        format!(
            "<a href=\"{}\">{}</a>",
            action_path(a),
            esc(a.metadata.name.as_deref().unwrap_or_default())
        ),
        esc(&read::namespace(a)),
        esc(&a.spec.action),
        format!(
            "<a href=\"{}\">{}</a>",
            app_path(&read::namespace(a), &a.spec.workload),
            esc(&a.spec.workload)
        ),
        badge(s.phase.as_str()),
        time(
            &a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        ),
        bytes(s.bytes),
    ]
}

pub async fn action_sets(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    match read::action_sets(&ui, &v).await {
        Ok(sets) => {
            let rows: Vec<Vec<String>> = sets.iter().map(action_row).collect();
            page(
                &v,
                "Actions",
                &table("Every action you may see, newest first", ACTION_HEAD, &rows),
            )
        }
        Err(e) => failed(&v, "Actions", e),
    }
}

fn progress(a: &ActionSetResource) -> serde_json::Value {
    let s = status(a);
    let elapsed = s
        .start_time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let end = s
                .end_time
                .as_deref()
                .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                .unwrap_or_else(jiff::Timestamp::now);
            end.duration_since(t).as_secs_f64().max(0.001)
        });
    serde_json::json!({
        "phase": s.phase.as_str(),
        "bytes": bytes(s.bytes),
        "rate": elapsed.map(|e| format!("{}/s", bytes((s.bytes as f64 / e) as u64))).unwrap_or_default(),
        "done": s.bytes,
    })
}

pub async fn action_set(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let a = match one_action_set(&ui, &v, &ns, &name).await {
        Ok(a) => a,
        Err(r) => return refused(&v, "ActionSet", r),
    };
    let s = status(&a);
    let p = progress(&a);
    let mut body = String::new();
    if matches!(s.phase, Phase::Pending | Phase::Running) {
        body.push_str(&format!(
            "<div data-events=\"{}/events?from={}\"><progress id=\"bar\" aria-label=\"Progress\"></progress><noscript><p>Reload the page to see progress.</p></noscript></div>",
            action_path(&a),
            s.logs.len()
        ));
    }
    body.push_str(&format!(
        "<dl><dt>Action</dt><dd>{} of <a href=\"{}\">{}</a> in {}</dd><dt>Phase</dt><dd><span id=\"phase\">{}</span></dd><dt>Bytes</dt><dd id=\"bytes\">{}</dd><dt>Rate</dt><dd id=\"rate\">{}</dd><dt>Runner</dt><dd>{}</dd><dt>Blueprint</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Ended</dt><dd>{}</dd>",
        esc(&a.spec.action),
        app_path(&ns, &a.spec.workload),
        esc(&a.spec.workload),
        esc(&ns),
        esc(s.phase.as_str()),
        esc(p["bytes"].as_str().unwrap_or_default()),
        esc(p["rate"].as_str().unwrap_or_default()),
        esc(s.runner.as_deref().unwrap_or("-")),
        esc(s.blueprint.as_deref().unwrap_or("-")),
        time(s.start_time.as_deref().unwrap_or_default()),
        time(s.end_time.as_deref().unwrap_or_default()),
    ));
    if let Some(by) = a
        .metadata
        .annotations
        .as_ref()
        .and_then(|m| m.get(crate::ui::cluster::start::REQUESTED_BY_ANNOTATION))
    {
        body.push_str(&format!("<dt>Requested by</dt><dd>{}</dd>", esc(by)));
    }
    if let Some(rp) = &a.spec.restore_point {
        body.push_str(&format!("<dt>From</dt><dd>{}</dd>", esc(rp)));
    }
    if let Some(rp) = &s.restore_point {
        body.push_str(&format!(
            "<dt>Restore point</dt><dd id=\"restore-point\">{}</dd>",
            esc(rp)
        ));
    }
    if let Some(e) = &s.error {
        body.push_str(&format!(
            "<dt>Error</dt><dd id=\"error\" role=\"alert\" class=\"error\">{}</dd>",
            esc(e)
        ));
    }
    body.push_str("</dl>");
    body.push_str(&records(&s));
    page(&v, &format!("ActionSet {ns}/{name}"), &body)
}

/// `progress` events every second (read from the API server) until the action ends.
pub async fn action_events(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<Since>,
) -> Response {
    if let Err(r) = one_action_set(&ui, &v, &ns, &name).await {
        return refused(&v, "ActionSet", r);
    }
    let sets = kube::Api::<ActionSetResource>::namespaced(ui.client.clone(), &ns);
    let start = (sets, name, false, q.from);
    let stream = futures::stream::unfold(start, |(sets, name, ended, seen)| async move {
        if ended {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let a = sets.get(&name).await.ok()?;
        let s = status(&a);
        let ended = matches!(s.phase, Phase::Completed | Phase::Failed);
        let mut p = progress(&a);
        let seen = with_logs(&mut p, &s.logs, seen);
        let event = Event::default().event("progress").data(p.to_string());
        Some((
            Ok::<_, std::convert::Infallible>(event),
            (sets, name, ended, seen),
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
