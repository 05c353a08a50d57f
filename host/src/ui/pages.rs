//! Server-rendered pages: no JavaScript build, no CDN; every value escaped.

use super::Ui;
use super::api::{self, Application};
use crate::model::{ActionKind, ActionSet};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// `s` safe in HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ccc}.NonCompliant{color:#a00;font-weight:bold}.Compliant{color:#060}.Unmanaged{color:#555}button{padding:.3rem .8rem}@media(max-width:600px){td,th{display:block}}";

fn page(title: &str, body: &str, refresh: bool) -> Html<String> {
    let meta = if refresh {
        "<meta http-equiv=\"refresh\" content=\"1\">"
    } else {
        ""
    };
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}<title>{} · coffer</title><style>{STYLE}</style></head><body><nav><a href=\"/\">Overview</a></nav><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    ))
}

fn row(ui: &Ui, a: &Application) -> String {
    let state = if a.reasons.is_empty() {
        a.compliance.clone()
    } else {
        format!("{} — {}", a.compliance, a.reasons.join("; "))
    };
    format!(
        "<tr><td>{name}</td><td>{bp}</td><td class=\"{c}\">{state}</td><td>{pol}</td><td>{rps}</td><td><form method=\"post\" action=\"/applications/{name}/backup\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" aria-label=\"Back up {name} now\">Back up now</button></form></td></tr>",
        name = esc(&a.name),
        bp = esc(&a.blueprint),
        c = esc(&a.compliance),
        state = esc(&state),
        pol = esc(&a.policies.join(", ")),
        rps = a.restore_points,
        csrf = esc(ui.token.csrf()),
    )
}

pub async fn overview(State(ui): State<Arc<Ui>>) -> Response {
    let apps = match api::applications(&ui.coffer) {
        Ok(a) => a,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    };
    let count = |s: &str| apps.iter().filter(|a| a.compliance == s).count();
    let mut body = format!(
        "<p>{} NonCompliant · {} Compliant · {} Unmanaged</p><table><thead><tr><th scope=\"col\">Application</th><th scope=\"col\">Blueprint</th><th scope=\"col\">Compliance</th><th scope=\"col\">Policies</th><th scope=\"col\">Restore points</th><th scope=\"col\">Act</th></tr></thead><tbody>",
        count("NonCompliant"),
        count("Compliant"),
        count("Unmanaged")
    );
    for a in &apps {
        body.push_str(&row(&ui, a));
    }
    body.push_str("</tbody></table>");
    page("Overview", &body, false).into_response()
}

pub async fn action_set(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> Response {
    let a: ActionSet = match ui.coffer.action_set(&name) {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                page("Not found", &esc(&format!("{e:#}")), false),
            )
                .into_response();
        }
    };
    let phase = a.status.phase.as_str();
    let running = matches!(phase, "Pending" | "Running");
    let mut body = format!(
        "<dl><dt>Action</dt><dd>{} of {}</dd><dt>Phase</dt><dd id=\"phase\">{}</dd><dt>Bytes</dt><dd>{}</dd>",
        esc(&a.spec.action),
        esc(&a.spec.workload),
        esc(phase),
        a.status.bytes
    );
    if let Some(rp) = &a.status.restore_point {
        body.push_str(&format!(
            "<dt>Restore point</dt><dd id=\"restore-point\">{}</dd>",
            esc(rp)
        ));
    }
    if let Some(e) = &a.status.error {
        body.push_str(&format!("<dt>Error</dt><dd id=\"error\">{}</dd>", esc(e)));
    }
    body.push_str("</dl>");
    page(&format!("ActionSet {name}"), &body, running).into_response()
}

/// A form post: allowed only with the CSRF token (a browser sends the cookie by itself).
fn csrf_ok(ui: &Ui, form: &HashMap<String, String>, headers: &HeaderMap) -> bool {
    form.get(super::auth::CSRF_FIELD)
        .map(String::as_str)
        .or_else(|| {
            headers
                .get(super::auth::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
        })
        .is_some_and(|t| ui.token.csrf_matches(t))
}

pub async fn backup_form(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&ui, &form, &headers) {
        return (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again",
        )
            .into_response();
    }
    match api::launch(&ui, ActionKind::Backup, name, None, Default::default()).await {
        Ok(a) => Redirect::to(&format!("/actionsets/{}", a.name())).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            page("Backup refused", &esc(&format!("{e:#}")), false),
        )
            .into_response(),
    }
}

pub async fn login_page() -> Html<String> {
    page(
        "Log in",
        "<form method=\"post\" action=\"/login\"><label for=\"token\">Token</label> <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required> <button type=\"submit\">Log in</button></form><p>The token was printed when <code>coffer ui</code> started, or is in its --token-file.</p>",
        false,
    )
}

pub async fn login(
    State(ui): State<Arc<Ui>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    match form.get("token") {
        Some(t) if ui.token.matches(t) => {
            ([(header::SET_COOKIE, ui.token.cookie())], Redirect::to("/")).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            page(
                "Log in",
                "<p>Wrong token.</p><p><a href=\"/login\">Try again</a></p>",
                false,
            ),
        )
            .into_response(),
    }
}
