//! The dashboard of `coffer daemon --ui` on Kubernetes. Every request carries the person's
//! own Kubernetes token (`Authorization: Bearer`, as an OIDC proxy sends it, or the
//! HttpOnly cookie the log-in form sets); the API server says whose it is and what they may
//! do ([`access`]). Pages and the JSON API read the cluster with the daemon's
//! ServiceAccount and show only the namespaces where the person may list coffer's
//! resources; a backup or restore is an ActionSet created only where they may create one.
//! No Secret is ever read for a page.

mod access;
mod api;
mod pages;
mod read;
pub mod start;

use crate::k8s::kinds::ActionSetResource;
use crate::ui::kube_auth::KubeAuth;
use access::{Access, Viewer};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kube::Client;
use start::Refusal;
use std::sync::Arc;

pub struct ClusterUi {
    /// The daemon's own client: reads for pages, ActionSets the viewer may create.
    pub client: Client,
    /// Where Policies, Blueprints and bindings live.
    pub config_ns: String,
    access: Access,
}

impl ClusterUi {
    pub fn new(client: Client, config_ns: String) -> ClusterUi {
        ClusterUi {
            access: Access::new(KubeAuth::new(client.clone())),
            client,
            config_ns,
        }
    }
}

const APP: &str = "/applications/{ns}/{kind}/{name}";

pub fn router(ui: Arc<ClusterUi>) -> Router {
    let guarded = Router::new()
        .route("/", get(pages::overview))
        .route("/applications", get(pages::applications))
        .route(APP, get(pages::application))
        .route(&format!("{APP}/backup"), post(pages::backup_form))
        .route(
            &format!("{APP}/restore"),
            get(pages::restore_page).post(pages::restore_form),
        )
        .route("/actionsets", get(pages::action_sets))
        .route("/actionsets/{ns}/{name}", get(pages::action_set))
        .route("/actionsets/{ns}/{name}/events", get(pages::action_events))
        .route("/restorepoints", get(pages::restore_points))
        .route("/policies", get(pages::policies))
        .route("/profiles", get(pages::profiles))
        .route("/blueprints", get(pages::blueprints))
        .route("/api/v1/applications", get(api::get_applications))
        .route(&format!("/api/v1{APP}/backup"), post(api::post_backup))
        .route(&format!("/api/v1{APP}/restore"), post(api::post_restore))
        .route("/api/v1/restorepoints", get(api::get_restorepoints))
        .route("/api/v1/actionsets", get(api::get_actionsets))
        .route("/api/v1/actionsets/{ns}/{name}", get(api::get_actionset))
        .route("/api/v1/policies", get(api::get_policies))
        .route_layer(middleware::from_fn_with_state(ui.clone(), require_user));
    Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .merge(guarded)
        .with_state(ui)
}

/// No token the API server accepts, no page: 401 for the API, the log-in page for a
/// browser. An API change proved by the cookie needs the CSRF header too (forms carry it
/// as a field, checked by their handlers).
async fn require_user(State(ui): State<Arc<ClusterUi>>, mut req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let unauthorized = || {
        if api {
            crate::ui::api::error(
                StatusCode::UNAUTHORIZED,
                "no valid token: send Authorization: Bearer <your Kubernetes token> (kubectl create token, or your OIDC ID token)",
            )
        } else {
            Redirect::to("/login").into_response()
        }
    };
    let Some((token, proof)) = crate::ui::auth::presented(req.headers()) else {
        return unauthorized();
    };
    let by_cookie = proof == crate::ui::auth::Proof::Cookie;
    let viewer = match ui.access.viewer(&token, by_cookie).await {
        Ok(Some(v)) => v,
        Ok(None) => return unauthorized(),
        Err(e) => {
            return crate::ui::api::error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"));
        }
    };
    if api
        && viewer.by_cookie
        && req.method() != Method::GET
        && !req
            .headers()
            .get(crate::ui::auth::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| viewer.token.csrf_matches(t))
    {
        return crate::ui::api::error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    req.extensions_mut().insert(viewer);
    next.run(req).await
}

/// ActionSet `ns/name`, when `v` may get it.
async fn one_action_set(
    ui: &ClusterUi,
    v: &Viewer,
    ns: &str,
    name: &str,
) -> Result<ActionSetResource, Refusal> {
    if !crate::model::names::is_label(ns) || !crate::model::names::is_subdomain(name) {
        return Err(Refusal::Invalid(format!(
            "{ns}/{name} is not an ActionSet's name"
        )));
    }
    api::may_get(ui, v, ns, name).await?;
    kube::Api::<ActionSetResource>::namespaced(ui.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| {
            Refusal::Failed(anyhow::Error::new(e).context(format!("reading ActionSet {ns}/{name}")))
        })?
        .ok_or_else(|| Refusal::Missing(format!("ActionSet {ns}/{name} not found")))
}

/// Serve the cluster dashboard until the process is stopped.
pub async fn serve(
    client: Client,
    config_ns: String,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {addr}: {e}; pick another --ui address"))?;
    let ui = Arc::new(ClusterUi::new(client, config_ns));
    tracing::info!(%addr, "dashboard listening (Kubernetes: sign in with a Kubernetes token)");
    axum::serve(listener, router(ui)).await?;
    Ok(())
}
