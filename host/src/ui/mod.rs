//! The dashboard, served by coffer itself (`coffer ui`): server-rendered pages and the
//! JSON API under `/api/v1/`, every asset in the binary. Local mode binds to loopback by
//! default and requires the token on every request ([`auth`]).

mod api;
pub mod auth;
pub mod cluster;
mod form;
pub mod kube_auth;
pub mod pages;

use crate::action::Coffer;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::sync::Arc;

pub struct Ui {
    pub coffer: Arc<Coffer>,
    pub token: auth::Token,
}

pub fn router(ui: Arc<Ui>) -> Router {
    let guarded = Router::new()
        .route("/", get(pages::overview))
        .route("/applications", get(pages::applications))
        .route("/applications/{name}", get(pages::application))
        .route("/applications/{name}/backup", post(pages::backup_form))
        .route(
            "/applications/{name}/restore",
            get(pages::restore_page).post(pages::restore_form),
        )
        .route("/applications/{name}/policy", post(pages::policy_form))
        .route("/actionsets", get(pages::action_sets))
        .route("/actionsets/{name}", get(pages::action_set))
        .route("/actionsets/{name}/events", get(pages::action_events))
        .route("/restorepoints", get(pages::restore_points))
        .route("/restorepoints/{name}", get(pages::restore_point))
        .route("/restorepoints/{name}/verify", post(pages::verify_form))
        .route("/policies", get(pages::policies))
        .route("/profiles", get(pages::profiles))
        .route("/profiles/{name}/validate", post(pages::validate_profile))
        .route("/blueprints", get(pages::blueprints))
        .route("/api/v1/applications", get(api::get_applications))
        .route("/api/v1/applications/{name}/backup", post(api::post_backup))
        .route(
            "/api/v1/applications/{name}/restore",
            post(api::post_restore),
        )
        .route("/api/v1/restorepoints", get(api::get_restorepoints))
        .route("/api/v1/actionsets", get(api::get_actionsets))
        .route("/api/v1/actionsets/{name}", get(api::get_actionset))
        .route("/api/v1/policies", get(api::get_policies))
        .route_layer(middleware::from_fn_with_state(ui.clone(), require_token));
    Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .merge(guarded)
        .with_state(ui)
}

/// No token, no page: 401 for the API, the login page for a browser. The API changed
/// through the cookie needs the CSRF header too.
async fn require_token(State(ui): State<Arc<Ui>>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    match ui.token.check(req.headers()) {
        None if api => api::error(
            StatusCode::UNAUTHORIZED,
            "no valid token: send Authorization: Bearer <token> (coffer ui printed it, or --token-file holds it)",
        ),
        None => Redirect::to("/login").into_response(),
        Some(auth::Proof::Cookie)
            if api
                && req.method() != Method::GET
                && !req
                    .headers()
                    .get(auth::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| ui.token.csrf_matches(t)) =>
        {
            api::error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token")
        }
        Some(_) => next.run(req).await,
    }
}

/// Serve until the process is stopped.
pub async fn serve(
    coffer: Arc<Coffer>,
    addr: std::net::SocketAddr,
    token: auth::Token,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {addr}: {e}; pick another --addr"))?;
    let ui = Arc::new(Ui { coffer, token });
    tracing::info!(%addr, "dashboard listening");
    axum::serve(listener, router(ui)).await?;
    Ok(())
}
