//! The cluster dashboard's pages: the same look as the local one ([`crate::ui::pages`]),
//! over the cluster's resources and limited to what the viewer may list.

mod actions;
mod apps;
mod catalog;

pub use actions::{action_events, action_set, action_sets};
pub use apps::{application, applications, backup_form, overview, restore_form, restore_page};
pub use catalog::{blueprints, policies, profiles, restore_points};

use super::ClusterUi;
use super::access::Viewer;
use super::read;
use super::start::Refusal;
use crate::k8s::kinds::ActionSetResource;
use crate::ui::pages::{esc, shell, url};
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::Arc;

const MENU: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/applications", "Applications"),
    ("/actionsets", "Actions"),
    ("/restorepoints", "Restore points"),
    ("/policies", "Policies"),
    ("/profiles", "Profiles"),
    ("/blueprints", "Blueprints"),
];

pub(super) fn page(v: &Viewer, title: &str, body: &str) -> Response {
    let who = format!(
        "<p class=\"who\">Signed in as <strong>{}</strong>; you see what your Kubernetes RBAC lets you list.</p>",
        esc(&v.user.name)
    );
    shell(v.csrf(), MENU, title, &format!("{who}{body}")).into_response()
}

pub(super) fn problem(v: &Viewer, status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!("<p role=\"alert\" class=\"error\">{}</p>", esc(message));
    (status, page(v, title, &body)).into_response()
}

pub(super) fn refused(v: &Viewer, title: &str, r: Refusal) -> Response {
    let status = match &r {
        Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
        Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Missing(_) => StatusCode::NOT_FOUND,
        Refusal::Failed(_) => StatusCode::BAD_GATEWAY,
    };
    problem(v, status, title, &r.to_string())
}

pub(super) fn failed(v: &Viewer, title: &str, e: anyhow::Error) -> Response {
    problem(v, StatusCode::BAD_GATEWAY, title, &format!("{e:#}"))
}

pub(super) fn action_path(a: &ActionSetResource) -> String {
    format!(
        "/actionsets/{}/{}",
        url(&read::namespace(a)),
        url(a.metadata.name.as_deref().unwrap_or_default())
    )
}

pub(super) fn app_path(ns: &str, workload: &str) -> String {
    let rest: Vec<String> = workload.split('/').map(url).collect();
    format!("/applications/{}/{}", url(ns), rest.join("/"))
}

/// A form post carries the viewer's CSRF token (a browser sends the cookie by itself).
pub(super) fn csrf_ok(v: &Viewer, form: &HashMap<String, String>) -> bool {
    form.get(crate::ui::auth::CSRF_FIELD)
        .is_some_and(|t| v.token.csrf_matches(t))
}

pub(super) fn csrf_refused(v: &Viewer) -> Response {
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
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !crate::ui::auth::same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            shell(
                "",
                MENU,
                "Log in",
                "<p role=\"alert\" class=\"error\">This log-in came from another site's page. Log in from the dashboard's own login page.</p>",
            ),
        )
            .into_response();
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    match ui.access.viewer(token, true).await {
        Ok(Some(_)) => (
            [(
                axum::http::header::SET_COOKIE,
                crate::ui::auth::Token::new(token.to_string()).cookie(&headers),
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
