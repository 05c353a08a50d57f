//! Actions: the list, one ActionSet (progress, error, the audit trail of capability calls,
//! the plugin's logs), and its live progress as server-sent events.

use super::{Ui, badge, bytes, esc, link, page, problem, table, time, url};
use crate::model::{ActionSet, Kind, Phase};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

pub async fn action_sets(State(ui): State<Arc<Ui>>) -> Response {
    let mut sets: Vec<ActionSet> = match ui.coffer.catalog.list(Kind::ActionSet) {
        Ok(s) => s,
        Err(e) => {
            return problem(
                &ui,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Actions",
                &format!("{e:#}"),
            );
        }
    };
    sets.reverse(); // newest first
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|a| {
            vec![
                link("actionsets", a.name()),
                esc(&a.spec.action),
                link("applications", &a.spec.workload),
                badge(a.status.phase.as_str()),
                time(a.status.start_time.as_deref().unwrap_or_default()),
                bytes(a.status.bytes),
            ]
        })
        .collect();
    page(
        &ui,
        "Actions",
        &table(
            "Every action, newest first",
            &[
                "ActionSet",
                "Action",
                "Application",
                "Phase",
                "Started",
                "Bytes",
            ],
            &rows,
        ),
    )
    .into_response()
}

/// How far an action is: bytes, rate, and a total where one is known (a restore's size).
fn progress(ui: &Ui, a: &ActionSet) -> serde_json::Value {
    let elapsed = a
        .status
        .start_time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let end = a
                .status
                .end_time
                .as_deref()
                .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                .unwrap_or_else(jiff::Timestamp::now);
            end.duration_since(t).as_secs_f64().max(0.001)
        });
    let total = a
        .spec
        .restore_point
        .as_deref()
        .and_then(|rp| ui.coffer.restore_point(rp).ok())
        .map(|rp| rp.spec.size)
        .filter(|_| a.spec.action == "restore");
    serde_json::json!({
        "phase": a.status.phase.as_str(),
        "bytes": bytes(a.status.bytes),
        "rate": elapsed.map(|s| format!("{}/s", bytes((a.status.bytes as f64 / s) as u64))).unwrap_or_default(),
        "done": a.status.bytes,
        "total": total,
    })
}

pub async fn action_set(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> Response {
    let a = match ui.coffer.action_set(&name) {
        Ok(a) => a,
        Err(e) => return problem(&ui, StatusCode::NOT_FOUND, "Not found", &format!("{e:#}")),
    };
    let p = progress(&ui, &a);
    let running = matches!(a.status.phase, Phase::Pending | Phase::Running);
    let mut body = String::new();
    if running {
        let bar = match p["total"].as_u64() {
            Some(t) => format!(
                "<progress id=\"bar\" max=\"{t}\" value=\"{}\" aria-label=\"Progress\"></progress>",
                a.status.bytes
            ),
            None => "<progress id=\"bar\" aria-label=\"Progress\"></progress>".into(),
        };
        body.push_str(&format!(
            "<div data-events=\"/actionsets/{}/events?from={}\">{bar}<noscript><p>Reload the page to see progress.</p></noscript></div>",
            url(&name),
            a.status.logs.len()
        ));
    }
    body.push_str(&format!(
        "<dl><dt>Action</dt><dd>{} of <a href=\"/applications/{}\">{}</a></dd><dt>Phase</dt><dd><span id=\"phase\">{}</span></dd><dt>Bytes</dt><dd id=\"bytes\">{}</dd><dt>Rate</dt><dd id=\"rate\">{}</dd><dt>Started</dt><dd>{}</dd><dt>Ended</dt><dd>{}</dd>",
        esc(&a.spec.action),
        url(&a.spec.workload),
        esc(&a.spec.workload),
        esc(a.status.phase.as_str()),
        esc(p["bytes"].as_str().unwrap_or_default()),
        esc(p["rate"].as_str().unwrap_or_default()),
        time(a.status.start_time.as_deref().unwrap_or_default()),
        time(a.status.end_time.as_deref().unwrap_or_default()),
    ));
    if let Some(rp) = &a.spec.restore_point {
        body.push_str(&format!(
            "<dt>From</dt><dd><a href=\"/restorepoints/{}\">{}</a></dd>",
            url(rp),
            esc(rp)
        ));
    }
    if let Some(rp) = &a.status.restore_point {
        body.push_str(&format!("<dt>Restore point</dt><dd><a id=\"restore-point\" href=\"/restorepoints/{}\">{}</a></dd>", url(rp), esc(rp)));
    }
    if let Some(e) = &a.status.error {
        body.push_str(&format!(
            "<dt>Error</dt><dd id=\"error\" role=\"alert\" class=\"error\">{}</dd>",
            esc(e)
        ));
    }
    body.push_str("</dl>");
    body.push_str(&records(&a.status));
    page(&ui, &format!("ActionSet {name}"), &body).into_response()
}

/// `progress` events every half second until the action ends, each with the plugin's log
/// lines since the last (from the `from`-th, the count the page already shows).
pub async fn action_events(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    Query(q): Query<Since>,
) -> Response {
    if ui.coffer.action_set(&name).is_err() {
        return problem(
            &ui,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("ActionSet {name} not found"),
        );
    }
    let start = (ui, name, false, q.from);
    let stream = futures::stream::unfold(start, |(ui, name, ended, seen)| async move {
        if ended {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a = ui.coffer.action_set(&name).ok()?;
        let mut p = progress(&ui, &a);
        let seen = with_logs(&mut p, &a.status.logs, seen);
        let ended = matches!(a.status.phase, Phase::Completed | Phase::Failed);
        let event = Event::default().event("progress").data(p.to_string());
        Some((
            Ok::<_, std::convert::Infallible>(event),
            (ui, name, ended, seen),
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `?from=N`: log lines the viewer already has.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Since {
    #[serde(default)]
    pub from: usize,
}

/// Put the log lines after the `seen`-th into the event `p`; how many there are now.
pub fn with_logs(p: &mut serde_json::Value, logs: &[crate::model::LogLine], seen: usize) -> usize {
    let new: Vec<serde_json::Value> = logs
        .iter()
        .skip(seen)
        .map(|l| serde_json::json!({"at": format!("{} ms", l.at_ms), "level": l.level, "message": l.message}))
        .collect();
    p["logs"] = serde_json::Value::Array(new);
    logs.len().max(seen)
}

/// An action's audit trail of capability calls and the plugin's log lines (the log table
/// is `#logs`, which the live events append to).
pub fn records(s: &crate::model::ActionSetStatus) -> String {
    let audit: Vec<Vec<String>> = s
        .audit
        .iter()
        .map(|e| {
            vec![
                format!("{} ms", e.at_ms),
                esc(&e.capability),
                esc(&e.target),
                esc(&e.result),
                format!("{} ms", e.duration_ms),
                if e.bytes > 0 {
                    bytes(e.bytes)
                } else {
                    String::new()
                },
                format!("<code>{}</code>", esc(&e.args)),
            ]
        })
        .collect();
    let logs: Vec<Vec<String>> = s
        .logs
        .iter()
        .map(|l| vec![format!("{} ms", l.at_ms), esc(&l.level), esc(&l.message)])
        .collect();
    format!(
        "{}<div id=\"logs\">{}</div>",
        table(
            "Capability calls (audit trail)",
            &[
                "At",
                "Capability",
                "Target",
                "Result",
                "Took",
                "Bytes",
                "Arguments",
            ],
            &audit,
        ),
        table("Plugin logs", &["At", "Level", "Message"], &logs)
    )
}
