//! What the cluster holds besides applications: restore points, Policies, Profiles (with
//! the daemon's validation) and Blueprints (what each grants its plugin).

use super::{app_path, failed, page, problem};
use crate::ui::cluster::ClusterUi;
use crate::ui::cluster::access::Viewer;
use crate::ui::cluster::read;
use crate::ui::pages::{badge, bytes, esc, table, time};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

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

fn not_theirs(v: &Viewer, ui: &ClusterUi, title: &str, resource: &str) -> Response {
    problem(
        v,
        StatusCode::FORBIDDEN,
        title,
        &format!(
            "{} may not list {resource}.coffer.dev in namespace {}; ask for ClusterRole coffer-viewer there",
            v.user.name, ui.config_ns
        ),
    )
}

/// Where backups go, and whether the daemon's last check of each passed. No credential
/// is shown: a Profile names Secrets, and no page reads them.
pub async fn profiles(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let list = match read::profiles(&ui, &v).await {
        Ok(Some(p)) => p,
        Ok(None) => return not_theirs(&v, &ui, "Profiles", "profiles"),
        Err(e) => return failed(&v, "Profiles", e),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let s = &p.spec;
            let place = s
                .path
                .as_ref()
                .map(|d| d.display().to_string())
                .or_else(|| s.bucket.clone())
                .or_else(|| s.container.clone())
                .unwrap_or_default();
            let check = match p.status.as_ref().and_then(|s| s.validation.as_ref()) {
                None => "not checked yet".to_string(),
                Some(c) => format!(
                    "{} {}{}",
                    badge(if c.phase == "Valid" { "ok" } else { "FAIL" }),
                    time(&c.checked_at),
                    if c.message.is_empty() {
                        String::new()
                    } else {
                        format!("<br><small>{}</small>", esc(&c.message))
                    }
                ),
            };
            vec![
                esc(p.metadata.name.as_deref().unwrap_or_default()),
                esc(s.kind.as_str()),
                esc(&place),
                esc(s.endpoint.as_deref().unwrap_or("")),
                esc(if s.encryption.is_some() { "yes" } else { "no" }),
                check,
            ]
        })
        .collect();
    page(
        &v,
        "Profiles",
        &table(
            &format!(
                "Where backups go (namespace {}), as the daemon last validated them",
                ui.config_ns
            ),
            &[
                "Profile",
                "Type",
                "Location",
                "Endpoint",
                "Encrypted",
                "Validation",
            ],
            &rows,
        ),
    )
}

/// The Blueprints and what each grants its plugin.
pub async fn blueprints(
    State(ui): State<Arc<ClusterUi>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let list = match read::blueprints(&ui, &v).await {
        Ok(Some(b)) => b,
        Ok(None) => return not_theirs(&v, &ui, "Blueprints", "blueprints"),
        Err(e) => return failed(&v, "Blueprints", e),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            let s = &b.spec;
            let plugin = s
                .plugin
                .builtin
                .as_ref()
                .map(|n| format!("built-in {n}"))
                .or_else(|| s.plugin.path.as_ref().map(|p| p.display().to_string()))
                .unwrap_or_default();
            vec![
                esc(b.metadata.name.as_deref().unwrap_or_default()),
                esc(&plugin),
                format!(
                    "<code>{}</code>",
                    esc(&serde_json::to_string(&s.grants).unwrap_or_default())
                ),
                esc(&s.service_account.clone().unwrap_or_default()),
            ]
        })
        .collect();
    page(
        &v,
        "Blueprints",
        &table(
            &format!("Blueprints (namespace {})", ui.config_ns),
            &["Blueprint", "Plugin", "Grants", "ServiceAccount"],
            &rows,
        ),
    )
}
