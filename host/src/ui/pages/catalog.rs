//! Restore points, Policies, Profiles (with validation) and Blueprints (declared vs
//! granted capabilities). Secret references are shown as references, never their values.

use super::{
    Ui, badge, button_form, bytes, csrf_ok, csrf_refused, esc, link, page, problem, refused, table,
    time, url,
};
use crate::model::{Kind, Policy, RestorePoint};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

pub async fn restore_points(State(ui): State<Arc<Ui>>) -> Response {
    let mut rps: Vec<RestorePoint> = ui
        .coffer
        .catalog
        .list(Kind::RestorePoint)
        .unwrap_or_default();
    rps.reverse();
    let rows: Vec<Vec<String>> = rps
        .iter()
        .map(|r| {
            vec![
                link("restorepoints", r.name()),
                link("applications", &r.spec.workload),
                time(&r.spec.end_time),
                bytes(r.spec.size),
                bytes(r.spec.stored_size),
                esc(&r.spec.profile),
            ]
        })
        .collect();
    page(
        &ui,
        "Restore points",
        &table(
            "Every restore point, newest first",
            &[
                "Restore point",
                "Application",
                "Taken",
                "Size",
                "Stored",
                "Profile",
            ],
            &rows,
        ),
    )
    .into_response()
}

pub async fn restore_point(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> Response {
    let r = match ui.coffer.restore_point(&name) {
        Ok(r) => r,
        Err(e) => return problem(&ui, StatusCode::NOT_FOUND, "Not found", &format!("{e:#}")),
    };
    let mut body = format!(
        "<dl><dt>Application</dt><dd><a href=\"/applications/{wu}\">{w}</a></dd><dt>Taken</dt><dd>{start} – {end}</dd><dt>Size</dt><dd>{size} ({stored} stored)</dd><dt>Profile</dt><dd>{profile}</dd><dt>Plugin</dt><dd>{plugin} {version}</dd><dt>Made by</dt><dd><a href=\"/actionsets/{au}\">{a}</a></dd>",
        wu = url(&r.spec.workload),
        w = esc(&r.spec.workload),
        start = time(&r.spec.start_time),
        end = time(&r.spec.end_time),
        size = bytes(r.spec.size),
        stored = bytes(r.spec.stored_size),
        profile = esc(&r.spec.profile),
        plugin = esc(&r.spec.plugin.name),
        version = esc(&r.spec.plugin.version),
        au = url(&r.spec.action_set),
        a = esc(&r.spec.action_set),
    );
    if let Some(q) = &r.spec.quiesce {
        body.push_str(&format!(
            "<dt>Quiesced</dt><dd>{} for {}</dd>",
            time(&q.begin),
            q.ms.map(|m| format!("{m} ms"))
                .unwrap_or_else(|| "an unknown time".into())
        ));
    }
    body.push_str("</dl>");
    body.push_str(&format!(
        "<p><a href=\"/applications/{}/restore?from={}\">Restore…</a> {}</p>",
        url(&r.spec.workload),
        url(r.name()),
        button_form(
            &ui,
            &format!("/restorepoints/{}/verify", url(r.name())),
            "Verify",
            &[]
        )
    ));
    let rows: Vec<Vec<String>> = r
        .spec
        .artifacts
        .iter()
        .map(|a| vec![esc(&a.name), bytes(a.size)])
        .collect();
    body.push_str(&table("Artifacts", &["Name", "Size"], &rows));
    page(&ui, &format!("Restore point {name}"), &body).into_response()
}

pub async fn policies(State(ui): State<Arc<Ui>>) -> Response {
    let list: Vec<Policy> = ui.coffer.catalog.list(Kind::Policy).unwrap_or_default();
    let mut body = String::new();
    if list.is_empty() {
        body.push_str("<p>No policies yet. Create one from an unmanaged application's page.</p>");
    }
    for p in &list {
        let r = &p.spec.retention;
        let runs: Vec<Vec<String>> = p
            .status
            .runs
            .iter()
            .rev()
            .map(|run| {
                vec![
                    time(&run.tick),
                    badge(&run.result),
                    esc(run.message.as_deref().unwrap_or_default()),
                ]
            })
            .collect();
        body.push_str(&format!(
            "<section id=\"{id}\" aria-labelledby=\"h-{id}\"><h2 id=\"h-{id}\">{n}</h2><dl><dt>Frequency</dt><dd>{f}{tz}</dd><dt>Applications</dt><dd>{apps}</dd><dt>Retention</dt><dd>hourly {h}, daily {d}, weekly {w}, monthly {m}, yearly {y}</dd><dt>Next run</dt><dd>{next}</dd><dt>State</dt><dd>{state}</dd></dl>{runs}</section>",
            id = url(p.name()),
            n = esc(p.name()),
            f = esc(&p.spec.frequency),
            tz = p.spec.timezone.as_deref().map(|z| format!(" ({})", esc(z))).unwrap_or_default(),
            apps = p.spec.selector.workloads.iter().map(|w| link("applications", w)).collect::<Vec<_>>().join(", "),
            h = r.hourly, d = r.daily, w = r.weekly, m = r.monthly, y = r.yearly,
            next = time(p.status.next_tick.as_deref().unwrap_or_default()),
            state = if p.spec.paused { "paused".to_string() } else { p.status.error.as_deref().map(esc).unwrap_or_else(|| "active".into()) },
            runs = table("Latest runs", &["Tick", "Result", "Message"], &runs),
        ));
    }
    page(&ui, "Policies", &body).into_response()
}

pub async fn profiles(State(ui): State<Arc<Ui>>) -> Response {
    let list = ui.coffer.profiles().unwrap_or_default();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|(p, source)| {
            let s = &p.spec;
            let place = s
                .path
                .as_ref()
                .map(|d| d.display().to_string())
                .or_else(|| s.bucket.clone())
                .or_else(|| s.container.clone())
                .unwrap_or_default();
            vec![
                format!("<span id=\"{}\">{}</span>", url(p.name()), esc(p.name())),
                esc(s.kind.as_str()),
                esc(&place),
                esc(if s.encryption.is_some() { "yes" } else { "no" }),
                esc(source.as_str()),
                button_form(
                    &ui,
                    &format!("/profiles/{}/validate", url(p.name())),
                    "Validate",
                    &[],
                ),
            ]
        })
        .collect();
    page(
        &ui,
        "Profiles",
        &table(
            "Where backups go",
            &[
                "Profile",
                "Type",
                "Location",
                "Encrypted",
                "Source",
                "Check",
            ],
            &rows,
        ),
    )
    .into_response()
}

pub async fn validate_profile(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&ui, &f, &headers) {
        return csrf_refused(&ui);
    }
    let (p, _) = match ui.coffer.profile(&name) {
        Ok(p) => p,
        Err(e) => return problem(&ui, StatusCode::NOT_FOUND, "Not found", &format!("{e:#}")),
    };
    match crate::storage::ops::validate_profile(&p, &ui.coffer.credentials).await {
        Ok(probes) => {
            let ok = probes.iter().all(|p| p.ok);
            let rows: Vec<Vec<String>> = probes
                .iter()
                .map(|pr| {
                    vec![
                        esc(&pr.check),
                        badge(if pr.ok { "ok" } else { "FAIL" }),
                        esc(&pr.detail),
                    ]
                })
                .collect();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (
                status,
                page(
                    &ui,
                    &format!("Validate Profile {name}"),
                    &table("Checks", &["Check", "Result", "Detail"], &rows),
                ),
            )
                .into_response()
        }
        Err(e) => refused(&ui, &format!("Validate Profile {name}"), e),
    }
}

pub async fn blueprints(State(ui): State<Arc<Ui>>) -> Response {
    let list = ui.coffer.blueprints().unwrap_or_default();
    let mut body = String::new();
    for (b, source) in &list {
        let declared = crate::plugin::PluginBytes::resolve(&b.spec.plugin, b.name())
            .and_then(|p| crate::plugin::inspect(&p))
            .map(|i| serde_yaml_ng::to_string(&i.manifest.capabilities).unwrap_or_default())
            .unwrap_or_else(|e| format!("(the plugin could not be read: {e:#})"));
        let granted = serde_yaml_ng::to_string(&b.spec.grants).unwrap_or_default();
        body.push_str(&format!(
            "<section id=\"{id}\" aria-labelledby=\"h-{id}\"><h2 id=\"h-{id}\">{n}</h2><p>Source: {src}</p><h3>Declared by the plugin</h3><pre>{d}</pre><h3>Granted by the Blueprint</h3><pre>{g}</pre></section>",
            id = url(b.name()),
            n = esc(b.name()),
            src = esc(source.as_str()),
            d = esc(&declared),
            g = esc(&granted),
        ));
    }
    page(&ui, "Blueprints and plugins", &body).into_response()
}
