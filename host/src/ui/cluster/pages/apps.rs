//! Applications: the overview (what needs attention first), the list, one application
//! with its restore points and actions, and backing up or restoring it.

use super::actions::{ACTION_HEAD, action_row};
use super::{action_path, csrf_ok, csrf_refused, failed, page, problem, refused};
use crate::k8s::kinds::{ActionSetResource, status};
use crate::model::Phase;
use crate::ui::cluster::ClusterUi;
use crate::ui::cluster::access::Viewer;
use crate::ui::cluster::read::{self, Application};
use crate::ui::cluster::start::{Start, start, subject};
use crate::ui::pages::{badge, bytes, esc, post_button, table, time, url};
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::Arc;

fn app_rows(v: &Viewer, apps: &[Application]) -> Vec<Vec<String>> {
    apps.iter()
        .map(|a| {
            let reason = if a.reasons.is_empty() {
                String::new()
            } else {
                format!("<br><small>{}</small>", esc(&a.reasons.join("; ")))
            };
            let act = if a.blueprint.is_empty() {
                String::new()
            } else {
                post_button(
                    v.csrf(),
                    &format!("{}/backup", a.path()),
                    "Back up now",
                    &[],
                )
            };
            vec![
                format!("<a href=\"{}\">{}</a>", a.path(), esc(&a.name)),
                esc(if a.blueprint.is_empty() {
                    "(none)"
                } else {
                    &a.blueprint
                }),
                esc(&a.via()),
                format!("{}{reason}", badge(&a.compliance)),
                esc(&a.policies.join(", ")),
                a.restore_points.to_string(),
                act,
            ]
        })
        .collect()
}

const APP_HEAD: &[&str] = &[
    "Application",
    "Blueprint",
    "Bound by",
    "Compliance",
    "Policies",
    "Restore points",
    "Act",
];

pub async fn overview(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let apps = match read::applications(&ui, &v).await {
        Ok(a) => a,
        Err(e) => return failed(&v, "Overview", e),
    };
    let sets = match read::action_sets(&ui, &v).await {
        Ok(s) => s,
        Err(e) => return failed(&v, "Overview", e),
    };
    let count = |s: &str| apps.iter().filter(|a| a.compliance == s).count();
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let recent: Vec<&ActionSetResource> = sets
        .iter()
        .filter(|a| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| t.0.to_string().parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t >= since)
        })
        .collect();
    let by_phase = |p: Phase| recent.iter().filter(|a| status(a).phase == p).count();
    let mut body = format!(
        "<section aria-labelledby=\"h-state\"><h2 id=\"h-state\">At a glance</h2><div class=\"cards\"><div class=\"card\"><strong>{}</strong>{}</div><div class=\"card\"><strong>{}</strong>{}</div><div class=\"card\"><strong>{}</strong>{}</div><div class=\"card\"><strong>{}</strong>unprotected</div><div class=\"card\"><strong>{}</strong>actions in 24 h: {} failed, {} completed, {} running</div></div></section>",
        count("NonCompliant"),
        badge("NonCompliant"),
        count("Compliant"),
        badge("Compliant"),
        count("Unmanaged"),
        badge("Unmanaged"),
        count("Unprotected"),
        recent.len(),
        by_phase(Phase::Failed),
        by_phase(Phase::Completed),
        by_phase(Phase::Running) + by_phase(Phase::Pending),
    );
    let protected: Vec<Application> = apps
        .iter()
        .filter(|a| a.compliance != "Unprotected")
        .cloned()
        .collect();
    body.push_str(&table(
        "Protected applications, anything failing first",
        APP_HEAD,
        &app_rows(&v, &protected),
    ));
    let failing: Vec<&&ActionSetResource> = recent
        .iter()
        .filter(|a| status(a).phase == Phase::Failed)
        .collect();
    let rows: Vec<Vec<String>> = failing.iter().map(|a| action_row(a)).collect();
    body.push_str(&table(
        "Failed actions of the last 24 h",
        ACTION_HEAD,
        &rows,
    ));
    page(&v, "Overview", &body)
}

pub async fn applications(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    match read::applications(&ui, &v).await {
        Ok(apps) => page(
            &v,
            "Applications",
            &table(
                "Every StatefulSet and Deployment you may see, and how it is protected",
                APP_HEAD,
                &app_rows(&v, &apps),
            ),
        ),
        Err(e) => failed(&v, "Applications", e),
    }
}

/// The application `ns/kind/name` as the viewer sees it, or the page saying why not.
async fn find(
    ui: &ClusterUi,
    v: &Viewer,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Application, Response> {
    let workload = subject(kind, name).map_err(|r| refused(v, "Application", r))?;
    let apps = read::applications(ui, v)
        .await
        .map_err(|e| failed(v, "Application", e))?;
    apps.into_iter()
        .find(|a| a.namespace == ns && a.workload == workload)
        .ok_or_else(|| {
            problem(
                v,
                StatusCode::NOT_FOUND,
                "Not found",
                &format!(
                    "no {workload} in namespace {ns} that you may see (you need list on actionsets.coffer.dev there)"
                ),
            )
        })
}

pub async fn application(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, kind, name)): Path<(String, String, String)>,
) -> Response {
    let a = match find(&ui, &v, &ns, &kind, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut body = format!(
        "<dl><dt>Namespace</dt><dd>{}</dd><dt>Workload</dt><dd>{}</dd><dt>Blueprint</dt><dd>{}</dd><dt>Bound by</dt><dd>{}</dd><dt>Compliance</dt><dd>{}</dd><dt>Policies</dt><dd>{}</dd></dl>",
        esc(&a.namespace),
        esc(&a.workload),
        esc(if a.blueprint.is_empty() {
            "(none: annotate it with coffer.dev/blueprint or add a BlueprintBinding)"
        } else {
            &a.blueprint
        }),
        esc(&a.via()),
        badge(&a.compliance),
        esc(&a.policies.join(", ")),
    );
    for r in &a.reasons {
        body.push_str(&format!("<p class=\"error\">{}</p>", esc(r)));
    }
    if !a.blueprint.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>",
            post_button(
                v.csrf(),
                &format!("{}/backup", a.path()),
                "Back up now",
                &[]
            )
        ));
    }
    let rps = match read::restore_points(&ui, &v).await {
        Ok(r) => r,
        Err(e) => return failed(&v, "Application", e),
    };
    let rows: Vec<Vec<String>> = rps
        .iter()
        .filter(|r| read::namespace(*r) == a.namespace && r.spec.workload == a.workload)
        .map(|r| {
            let name = r.metadata.name.clone().unwrap_or_default();
            vec![
                esc(&name),
                time(&r.spec.start_time),
                bytes(r.spec.size),
                bytes(r.spec.stored_size),
                esc(&r.spec.profile),
                format!(
                    "<a href=\"{}/restore?from={}\">Restore…</a>",
                    a.path(),
                    url(&name)
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        "Restore points, newest first",
        &["Name", "Taken", "Size", "Stored", "Profile", "Act"],
        &rows,
    ));
    body.push_str(&format!(
        "<form method=\"get\" action=\"{}/restore\"><p><label for=\"at\">Restore to a point in time (UTC, e.g. 2026-12-01T08:00:00Z)</label> <input id=\"at\" name=\"at\" required> <button type=\"submit\">Choose…</button></p></form>",
        a.path()
    ));
    let sets = match read::action_sets(&ui, &v).await {
        Ok(s) => s,
        Err(e) => return failed(&v, "Application", e),
    };
    let rows: Vec<Vec<String>> = sets
        .iter()
        .filter(|s| read::namespace(*s) == a.namespace && s.spec.workload == a.workload)
        .map(action_row)
        .collect();
    body.push_str(&table("Actions, newest first", ACTION_HEAD, &rows));
    page(&v, &format!("{} in {}", a.workload, a.namespace), &body)
}

pub async fn backup_form(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&v, &form) {
        return csrf_refused(&v);
    }
    let s = Start {
        action: "backup".into(),
        namespace: ns,
        workload: format!("{kind}/{name}"),
        ..Default::default()
    };
    match start(&ui, &v, s).await {
        Ok(a) => Redirect::to(&action_path(&a)).into_response(),
        Err(r) => refused(&v, "Back up", r),
    }
}

/// The confirmation before a restore: what will be overwritten, with what.
pub async fn restore_page(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match find(&ui, &v, &ns, &kind, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (from, chosen) = match (q.get("from"), q.get("at").filter(|t| !t.is_empty())) {
        (Some(rp), _) => (rp.clone(), String::new()),
        (None, Some(at)) => {
            match crate::ui::cluster::start::restore_point_at(&ui, &v, &ns, &a.workload, at).await {
                Ok(c) => (
                    c.name.clone(),
                    format!(
                        "<p id=\"chosen\">For {}: the newest restore point taken at or before it, {} (taken {}).</p>",
                        time(&c.at.to_string()),
                        esc(&c.name),
                        time(&c.taken.to_string())
                    ),
                ),
                Err(r) => return refused(&v, "Restore", r),
            }
        }
        (None, None) => {
            return problem(
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Restore",
                "pick a restore point or a point in time on the application's page",
            );
        }
    };
    let from = &from;
    let body = chosen
        + &format!(
            "<p class=\"warning\" role=\"note\">This overwrites the data of <strong>{w}</strong> in namespace <strong>{ns}</strong> with restore point <strong>{rp}</strong>. With a target namespace, the application is recreated there instead (if that namespace accepts restores from {ns}).</p><form method=\"post\" action=\"{path}/restore\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"restorePoint\" value=\"{rp}\"><p><label for=\"target\">Target namespace (optional)</label> <input id=\"target\" name=\"targetNamespace\" pattern=\"[a-z0-9]([-a-z0-9]*[a-z0-9])?\"></p><p><input type=\"checkbox\" id=\"confirm\" name=\"confirm\" value=\"yes\" required> <label for=\"confirm\">I understand what will be overwritten</label></p><p><button type=\"submit\">Restore</button></p></form>",
            w = esc(&a.workload),
            ns = esc(&a.namespace),
            rp = esc(from),
            path = a.path(),
            csrf = esc(v.csrf()),
        );
    page(&v, &format!("Restore {}", a.workload), &body)
}

pub async fn restore_form(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&v, &form) {
        return csrf_refused(&v);
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        return problem(
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Restore",
            "confirm what will be overwritten first",
        );
    }
    let s = Start {
        action: "restore".into(),
        namespace: ns,
        workload: format!("{kind}/{name}"),
        restore_point: form.get("restorePoint").cloned(),
        target_namespace: form
            .get("targetNamespace")
            .cloned()
            .filter(|t| !t.is_empty()),
        ..Default::default()
    };
    match start(&ui, &v, s).await {
        Ok(a) => Redirect::to(&action_path(&a)).into_response(),
        Err(r) => refused(&v, "Restore", r),
    }
}
