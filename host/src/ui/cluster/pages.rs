//! The cluster dashboard's pages: the same look as the local one ([`crate::ui::pages`]),
//! over the cluster's resources and limited to what the viewer may list.

use super::access::Viewer;
use super::read::{self, Application};
use super::start::{Refusal, Start, start, subject};
use super::{ClusterUi, one_action_set};
use crate::k8s::kinds::{ActionSetResource, status};
use crate::model::Phase;
use crate::ui::pages::{Since, badge, bytes, esc, post_button, shell, table, time, url, with_logs};
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const MENU: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/applications", "Applications"),
    ("/actionsets", "Actions"),
    ("/restorepoints", "Restore points"),
    ("/policies", "Policies"),
];

fn page(v: &Viewer, title: &str, body: &str) -> Response {
    let who = format!(
        "<p class=\"who\">Signed in as <strong>{}</strong>; you see what your Kubernetes RBAC lets you list.</p>",
        esc(&v.user.name)
    );
    shell(v.csrf(), MENU, title, &format!("{who}{body}")).into_response()
}

fn problem(v: &Viewer, status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!("<p role=\"alert\" class=\"error\">{}</p>", esc(message));
    (status, page(v, title, &body)).into_response()
}

fn refused(v: &Viewer, title: &str, r: Refusal) -> Response {
    let status = match &r {
        Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
        Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Missing(_) => StatusCode::NOT_FOUND,
        Refusal::Failed(_) => StatusCode::BAD_GATEWAY,
    };
    problem(v, status, title, &r.to_string())
}

fn failed(v: &Viewer, title: &str, e: anyhow::Error) -> Response {
    problem(v, StatusCode::BAD_GATEWAY, title, &format!("{e:#}"))
}

fn action_path(a: &ActionSetResource) -> String {
    format!(
        "/actionsets/{}/{}",
        url(&read::namespace(a)),
        url(a.metadata.name.as_deref().unwrap_or_default())
    )
}

fn app_path(ns: &str, workload: &str) -> String {
    let rest: Vec<String> = workload.split('/').map(url).collect();
    format!("/applications/{}/{}", url(ns), rest.join("/"))
}

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
    let Some(from) = q.get("from") else {
        return problem(
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Restore",
            "pick a restore point on the application's page",
        );
    };
    let body = format!(
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

const ACTION_HEAD: &[&str] = &[
    "ActionSet",
    "Namespace",
    "Action",
    "Workload",
    "Phase",
    "Created",
    "Bytes",
];

fn action_row(a: &ActionSetResource) -> Vec<String> {
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
        .and_then(|m| m.get(super::start::REQUESTED_BY_ANNOTATION))
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
                format!("<code>{}</code>", esc(&e.args)),
            ]
        })
        .collect();
    body.push_str(&table(
        "Capability calls (audit trail)",
        &["At", "Capability", "Target", "Result", "Took", "Arguments"],
        &audit,
    ));
    let logs: Vec<Vec<String>> = s
        .logs
        .iter()
        .map(|l| vec![format!("{} ms", l.at_ms), esc(&l.level), esc(&l.message)])
        .collect();
    body.push_str(&format!(
        "<div id=\"logs\">{}</div>",
        table("Plugin logs", &["At", "Level", "Message"], &logs)
    ));
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

pub async fn restore_points(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let rps = match read::restore_points(&ui, &v).await {
        Ok(r) => r,
        Err(e) => return failed(&v, "Restore points", e),
    };
    let rows: Vec<Vec<String>> = rps
        .iter()
        .map(|r| {
            let ns = read::namespace(r);
            vec![
                esc(r.metadata.name.as_deref().unwrap_or_default()),
                esc(&ns),
                format!(
                    "<a href=\"{}\">{}</a>",
                    app_path(&ns, &r.spec.workload),
                    esc(&r.spec.workload)
                ),
                esc(&r.spec.blueprint),
                time(&r.spec.start_time),
                bytes(r.spec.size),
                bytes(r.spec.stored_size),
                r.spec
                    .quiesce
                    .as_ref()
                    .map(|q| {
                        q.ms.map(|ms| format!("{ms} ms"))
                            .unwrap_or_else(|| "open".into())
                    })
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    page(
        &v,
        "Restore points",
        &table(
            "Every restore point you may see, newest first",
            &[
                "Name",
                "Namespace",
                "Workload",
                "Blueprint",
                "Taken",
                "Size",
                "Stored",
                "Quiesced",
            ],
            &rows,
        ),
    )
}

pub async fn policies(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let all = match read::policies(&ui, &v).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return problem(
                &v,
                StatusCode::FORBIDDEN,
                "Policies",
                &format!(
                    "{} may not list policies.coffer.dev in namespace {}; ask for ClusterRole coffer-viewer there",
                    v.user.name, ui.config_ns
                ),
            );
        }
        Err(e) => return failed(&v, "Policies", e),
    };
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|p| {
            let last = p.status.runs.last();
            vec![
                esc(p.name()),
                esc(&p.spec.frequency),
                time(p.status.next_tick.as_deref().unwrap_or_default()),
                last.map(|r| format!("{} {}", time(&r.tick), esc(&r.result)))
                    .unwrap_or_else(|| "-".into()),
                p.status
                    .compliance
                    .iter()
                    .filter(|c| c.state == "NonCompliant")
                    .count()
                    .to_string(),
            ]
        })
        .collect();
    page(
        &v,
        "Policies",
        &table(
            &format!("Policies in namespace {}", ui.config_ns),
            &[
                "Policy",
                "Frequency",
                "Next run",
                "Last run",
                "NonCompliant",
            ],
            &rows,
        ),
    )
}

/// A form post carries the viewer's CSRF token (a browser sends the cookie by itself).
fn csrf_ok(v: &Viewer, form: &HashMap<String, String>) -> bool {
    form.get(crate::ui::auth::CSRF_FIELD)
        .is_some_and(|t| v.token.csrf_matches(t))
}

fn csrf_refused(v: &Viewer) -> Response {
    problem(
        v,
        StatusCode::FORBIDDEN,
        "Refused",
        "missing or wrong CSRF token: reload the page and try again",
    )
}

pub async fn login_page() -> Html<String> {
    shell(
        "",
        MENU,
        "Log in",
        "<form method=\"post\" action=\"/login\"><p><label for=\"token\">Kubernetes token</label> <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required> <button type=\"submit\">Log in</button></p></form><p>Your own token: <code>kubectl create token NAME</code> for a ServiceAccount, or your OIDC ID token. The dashboard shows and does only what your RBAC allows. Behind an OIDC proxy that sends <code>Authorization: Bearer</code>, no log-in is needed.</p>",
    )
}

pub async fn login(
    State(ui): State<Arc<ClusterUi>>,
    _headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    match ui.access.viewer(token, true).await {
        Ok(Some(_)) => (
            [(
                axum::http::header::SET_COOKIE,
                crate::ui::auth::Token::new(token.to_string()).cookie(),
            )],
            Redirect::to("/"),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            shell(
                "",
                MENU,
                "Log in",
                "<p role=\"alert\" class=\"error\">The API server does not accept that token. Log in again with a current one.</p>",
            ),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            shell(
                "",
                MENU,
                "Log in",
                &format!(
                    "<p role=\"alert\" class=\"error\">{}</p>",
                    esc(&format!("{e:#}"))
                ),
            ),
        )
            .into_response(),
    }
}
