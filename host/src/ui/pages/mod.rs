//! Server-rendered pages: no JavaScript build, no CDN, every asset in the binary, every
//! value escaped. Each page has its own URL; forms carry the CSRF token; a little inline
//! script shows times in the viewer's zone and follows running actions (server-sent events),
//! and every page works without it.

mod actions;
mod app;
mod catalog;
mod overview;

pub use actions::{Since, action_events, action_set, action_sets, records, with_logs};
pub use app::{application, backup_form, policy_form, restore_form, restore_page, verify_form};
pub use catalog::{
    blueprints, policies, profiles, restore_point, restore_points, validate_profile,
};
pub use overview::{applications, overview};

use super::Ui;
use axum::Form;
use axum::extract::State;
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

/// A name in a URL path: names are DNS-label-like, but escape whatever is not.
pub fn url(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A link to the page of `name` under `/{kind}/`.
pub fn link(kind: &str, name: &str) -> String {
    format!("<a href=\"/{kind}/{}\">{}</a>", url(name), esc(name))
}

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("enhance.js");

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/applications", "Applications"),
    ("/actionsets", "Actions"),
    ("/restorepoints", "Restore points"),
    ("/policies", "Policies"),
    ("/profiles", "Profiles"),
    ("/blueprints", "Blueprints"),
];

/// A whole page. `csrf` goes in a meta tag for the script's API calls.
pub fn page(ui: &Ui, title: &str, body: &str) -> Html<String> {
    shell(ui.token.csrf(), NAV, title, body)
}

/// A whole page of any dashboard (local or cluster): its menu, the CSRF token of the
/// viewer, the style and the script.
pub fn shell(csrf: &str, menu: &[(&str, &str)], title: &str, body: &str) -> Html<String> {
    let nav: String = menu
        .iter()
        .map(|(href, label)| format!("<li><a href=\"{href}\">{label}</a></li>"))
        .collect();
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"csrf\" content=\"{csrf}\"><title>{t} · coffer</title><style>{STYLE}</style></head><body><a class=\"skip\" href=\"#main\">Skip to content</a><header><nav aria-label=\"Main\"><ul>{nav}</ul></nav></header><main id=\"main\"><h1>{t}</h1>{body}</main><script>{SCRIPT}</script></body></html>",
        csrf = esc(csrf),
        t = esc(title),
    ))
}

/// An error page with a status.
pub fn problem(ui: &Ui, status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        page(
            ui,
            title,
            &format!("<p role=\"alert\" class=\"error\">{}</p>", esc(message)),
        ),
    )
        .into_response()
}

/// 422 with the reason: what was asked could not start, or was refused.
pub fn refused(ui: &Ui, title: &str, e: impl std::fmt::Display) -> Response {
    problem(
        ui,
        StatusCode::UNPROCESSABLE_ENTITY,
        title,
        &format!("{e:#}"),
    )
}

/// After starting an action: its page, or why it did not start.
pub fn started(ui: &Ui, title: &str, r: anyhow::Result<crate::model::ActionSet>) -> Response {
    match r {
        Ok(a) => see(&format!("/actionsets/{}", url(a.name()))),
        Err(e) => refused(ui, title, e),
    }
}

/// A time for people: the UTC text, turned into the viewer's zone by the script.
pub fn time(rfc3339: &str) -> String {
    if rfc3339.is_empty() {
        return "-".into();
    }
    format!("<time datetime=\"{0}\">{0}</time>", esc(rfc3339))
}

pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A table with a header row; cells are HTML already.
pub fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for h in head {
        out.push_str(&format!("<th scope=\"col\">{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"{}\">None yet.</td></tr>",
            head.len()
        ));
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{c}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A state word with a symbol, so it reads without colour.
pub fn badge(state: &str) -> String {
    let sym = match state {
        "Compliant" | "Completed" | "ok" => "✔",
        "NonCompliant" | "Failed" | "FAIL" => "✖",
        "Running" | "Pending" => "…",
        _ => "–",
    };
    format!(
        "<span class=\"badge {}\">{sym} {}</span>",
        esc(state),
        esc(state)
    )
}

/// A form that posts to `action` with the CSRF token and one button.
pub fn button_form(ui: &Ui, action: &str, label: &str, fields: &[(&str, &str)]) -> String {
    post_button(ui.token.csrf(), action, label, fields)
}

/// [`button_form`] with the viewer's CSRF token given.
pub fn post_button(csrf: &str, action: &str, label: &str, fields: &[(&str, &str)]) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}<button type=\"submit\">{}</button></form>",
        esc(action),
        esc(csrf),
        esc(label)
    )
}

/// A form post carries the CSRF token (a browser sends the cookie by itself).
pub fn csrf_ok(ui: &Ui, form: &HashMap<String, String>, headers: &HeaderMap) -> bool {
    form.get(super::auth::CSRF_FIELD)
        .map(String::as_str)
        .or_else(|| {
            headers
                .get(super::auth::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
        })
        .is_some_and(|t| ui.token.csrf_matches(t))
}

pub fn csrf_refused(ui: &Ui) -> Response {
    problem(
        ui,
        StatusCode::FORBIDDEN,
        "Refused",
        "missing or wrong CSRF token: reload the page and try again",
    )
}

pub async fn login_page(State(ui): State<Arc<Ui>>) -> Html<String> {
    page(
        &ui,
        "Log in",
        "<form method=\"post\" action=\"/login\"><p><label for=\"token\">Token</label> <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required> <button type=\"submit\">Log in</button></p></form><p>The token was printed when <code>coffer ui</code> started, or is in its <code>--token-file</code>.</p>",
    )
}

pub async fn login(
    State(ui): State<Arc<Ui>>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !crate::ui::auth::same_origin(&headers) {
        return problem(
            &ui,
            StatusCode::FORBIDDEN,
            "Log in",
            "This log-in came from another site's page. Log in from the dashboard's own login page.",
        );
    }
    match form.get("token") {
        Some(t) if ui.token.matches(t) => (
            [(header::SET_COOKIE, ui.token.cookie(&headers))],
            Redirect::to("/"),
        )
            .into_response(),
        _ => problem(
            &ui,
            StatusCode::UNAUTHORIZED,
            "Log in",
            "Wrong token. Log in again with the token coffer ui printed or its --token-file holds.",
        ),
    }
}

/// A later page after a post (303, so a reload does not post again).
pub fn see(path: &str) -> Response {
    Redirect::to(path).into_response()
}
