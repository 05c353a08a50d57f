//! One application: its protection, its restore points, and what a person does with it —
//! back up now, restore (a form from the plugin's params schema, confirmed by naming what
//! is overwritten), verify, and a Policy for one that has none.

use super::{
    Ui, badge, button_form, bytes, csrf_ok, csrf_refused, esc, link, page, problem, refused, see,
    started, table, time, url,
};
use crate::model::{ActionKind, Kind, Policy, RestorePoint, Workload};
use crate::ui::{api, form};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

fn workload(ui: &Ui, name: &str) -> Result<Workload, Box<Response>> {
    ui.coffer
        .catalog
        .get::<Workload>(Kind::Workload, name)
        .ok()
        .flatten()
        .ok_or_else(|| {
            Box::new(problem(
                ui,
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("there is no application (Workload) {name}"),
            ))
        })
}

/// The params schema of `action` of the Workload's plugin.
fn schema(ui: &Ui, w: &Workload, action: &str) -> anyhow::Result<serde_json::Value> {
    let (b, _) = ui.coffer.blueprint(&w.spec.blueprint)?;
    let plugin = crate::plugin::PluginBytes::resolve(&b.spec.plugin, b.name())?;
    let m = crate::plugin::inspect(&plugin)?.manifest;
    Ok(m.action(action)
        .and_then(|a| a.params_schema.clone())
        .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})))
}

pub async fn application(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> Response {
    let w = match workload(&ui, &name) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let app = api::applications(&ui.coffer)
        .ok()
        .and_then(|a| a.into_iter().find(|a| a.name == name));
    let mut body = String::new();
    if let Some(a) = &app {
        body.push_str(&format!(
            "<dl><dt>Blueprint</dt><dd><a href=\"/blueprints#{}\">{}</a></dd><dt>Profile</dt><dd>{}</dd><dt>Compliance</dt><dd>{}{}</dd><dt>Policies</dt><dd>{}</dd></dl>",
            url(&a.blueprint),
            esc(&a.blueprint),
            esc(w.spec.profile.as_deref().unwrap_or("default")),
            badge(&a.compliance),
            a.reasons.iter().map(|r| format!("<br><small>{}</small>", esc(r))).collect::<String>(),
            if a.policies.is_empty() { "none".into() } else { esc(&a.policies.join(", ")) },
        ));
    }
    body.push_str(&format!(
        "<p>{}</p>",
        button_form(
            &ui,
            &format!("/applications/{}/backup", url(&name)),
            "Back up now",
            &[]
        )
    ));
    let mut rps: Vec<RestorePoint> = ui
        .coffer
        .catalog
        .list::<RestorePoint>(Kind::RestorePoint)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.spec.workload == name)
        .collect();
    rps.reverse();
    let rows: Vec<Vec<String>> = rps
        .iter()
        .map(|r| {
            vec![
                link("restorepoints", r.name()),
                time(&r.spec.end_time),
                bytes(r.spec.size),
                bytes(r.spec.stored_size),
                r.spec
                    .quiesce
                    .as_ref()
                    .and_then(|q| q.ms)
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "-".into()),
                format!(
                    "<a href=\"/applications/{}/restore?from={}\">Restore…</a> {}",
                    url(&name),
                    url(r.name()),
                    button_form(
                        &ui,
                        &format!("/restorepoints/{}/verify", url(r.name())),
                        "Verify",
                        &[]
                    )
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        "Restore points, newest first",
        &[
            "Restore point",
            "Taken",
            "Size",
            "Stored",
            "Quiesced",
            "Act",
        ],
        &rows,
    ));
    if !rps.is_empty() {
        body.push_str(&format!(
            "<form method=\"get\" action=\"/applications/{}/restore\"><div class=\"field\"><label for=\"at\">Restore to a point in time</label><br><input id=\"at\" name=\"at\" type=\"text\" placeholder=\"2026-12-04T08:00:00Z\" aria-describedby=\"at-d\" required> <button type=\"submit\">Choose…</button><small id=\"at-d\">The newest restore point taken at or before this time (RFC 3339, with its zone) is restored; the next page shows which before anything runs.</small></div></form>",
            url(&name)
        ));
    }
    if app.as_ref().is_some_and(|a| a.compliance == "Unmanaged") {
        body.push_str(&policy_fields(&ui, &name));
    }
    page(&ui, &format!("Application {name}"), &body).into_response()
}

fn policy_fields(ui: &Ui, app: &str) -> String {
    format!(
        "<section aria-labelledby=\"h-policy\"><h2 id=\"h-policy\">Create a policy</h2><form method=\"post\" action=\"/applications/{a}/policy\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<div class=\"field\"><label for=\"pol-name\">Name</label><br><input id=\"pol-name\" name=\"name\" type=\"text\" value=\"{n}-daily\" required></div>\
<div class=\"field\"><label for=\"pol-freq\">Frequency</label><br><input id=\"pol-freq\" name=\"frequency\" type=\"text\" value=\"@daily\" aria-describedby=\"pol-freq-d\" required><small id=\"pol-freq-d\">@hourly, @daily, @weekly, @monthly, or a 5-field cron such as 30 2 * * *</small></div>\
<fieldset><legend>Keep the newest restore point of each of the last</legend>\
<div class=\"field\"><label for=\"pol-daily\">days</label> <input id=\"pol-daily\" name=\"daily\" type=\"number\" min=\"0\" value=\"7\"></div>\
<div class=\"field\"><label for=\"pol-weekly\">weeks</label> <input id=\"pol-weekly\" name=\"weekly\" type=\"number\" min=\"0\" value=\"4\"></div>\
<div class=\"field\"><label for=\"pol-monthly\">months</label> <input id=\"pol-monthly\" name=\"monthly\" type=\"number\" min=\"0\" value=\"6\"></div></fieldset>\
<button type=\"submit\" name=\"step\" value=\"preview\">Preview</button> <button type=\"submit\" name=\"step\" value=\"save\">Save policy</button></form></section>",
        a = url(app),
        n = esc(app),
        csrf = esc(ui.token.csrf()),
    )
}

pub async fn backup_form(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&ui, &form, &headers) {
        return csrf_refused(&ui);
    }
    started(
        &ui,
        "Backup refused",
        api::launch(&ui, ActionKind::Backup, name, None, Default::default()).await,
    )
}

pub async fn restore_page(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let w = match workload(&ui, &name) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    // A restore point, or the newest taken at or before a point in time.
    let from = match (q.get("from"), q.get("at").filter(|a| !a.trim().is_empty())) {
        (Some(f), _) => f.clone(),
        (None, Some(at)) => match ui.coffer.restore_point_at(&name, at.trim()) {
            Ok(c) => c.name,
            Err(e) => {
                return refused(&ui, "Restore", e);
            }
        },
        (None, None) => {
            return problem(
                &ui,
                StatusCode::BAD_REQUEST,
                "Restore",
                "pick a restore point or a point in time on the application's page",
            );
        }
    };
    let rp = match ui.coffer.restore_point(&from) {
        Ok(rp) => rp,
        Err(e) => return problem(&ui, StatusCode::NOT_FOUND, "Restore", &format!("{e:#}")),
    };
    let schema = match schema(&ui, &w, "restore") {
        Ok(s) => s,
        Err(e) => {
            return problem(
                &ui,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Restore",
                &format!("{e:#}"),
            );
        }
    };
    let body = format!(
        "<p>Restore point <a href=\"/restorepoints/{rpu}\">{rpn}</a> of {src}, taken {taken} ({size}).</p>\
<form method=\"post\" action=\"/applications/{a}/restore\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"from\" value=\"{rpn}\">\
<fieldset><legend>Options of plugin {plugin} (empty: the plugin's default)</legend>{fields}</fieldset>\
<p role=\"note\"><strong>This overwrites the data of application {n}</strong> (Blueprint {bp}) with the restore point's, as the plugin's restore does.</p>\
<div class=\"field\"><input id=\"confirm\" name=\"confirm\" type=\"checkbox\" value=\"{n}\" required> <label for=\"confirm\">I understand that {n}'s data is overwritten</label></div>\
<button type=\"submit\">Restore {n}</button></form>",
        rpu = url(rp.name()),
        rpn = esc(rp.name()),
        src = esc(&rp.spec.workload),
        taken = time(&rp.spec.end_time),
        size = bytes(rp.spec.size),
        a = url(&name),
        n = esc(&name),
        bp = esc(&w.spec.blueprint),
        plugin = esc(&rp.spec.plugin.name),
        csrf = esc(ui.token.csrf()),
        fields = form::fields(&schema),
    );
    page(&ui, &format!("Restore {name}"), &body).into_response()
}

pub async fn restore_form(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&ui, &f, &headers) {
        return csrf_refused(&ui);
    }
    let w = match workload(&ui, &name) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if f.get("confirm") != Some(&name) {
        return problem(
            &ui,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Restore refused",
            &format!("confirm that {name}'s data is overwritten: tick the box on the restore form"),
        );
    }
    let Some(from) = f.get("from").cloned() else {
        return problem(
            &ui,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Restore refused",
            "no restore point given",
        );
    };
    let params = match schema(&ui, &w, "restore")
        .map_err(|e| format!("{e:#}"))
        .and_then(|s| form::params(&s, &f))
    {
        Ok(p) => p,
        Err(e) => return problem(&ui, StatusCode::UNPROCESSABLE_ENTITY, "Restore refused", &e),
    };
    started(
        &ui,
        "Restore refused",
        api::launch(&ui, ActionKind::Restore, name, Some(from), params).await,
    )
}

pub async fn verify_form(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&ui, &f, &headers) {
        return csrf_refused(&ui);
    }
    match api::verify(&ui, &name).await {
        Ok(report) => {
            let ok = report.ok();
            let mut rows = vec![vec![
                badge(if report.manifest.ok { "ok" } else { "FAIL" }),
                "manifest".into(),
                esc(&report.manifest.detail),
            ]];
            rows.extend(report.objects.iter().map(|o| {
                vec![
                    badge(if o.ok { "ok" } else { "FAIL" }),
                    esc(&o.stored_key),
                    esc(&o.detail),
                ]
            }));
            let mut body = format!(
                "<p>{} Restore point <a href=\"/restorepoints/{}\">{}</a> in Profile {}</p>{}",
                badge(if ok { "ok" } else { "FAIL" }),
                url(&name),
                esc(&name),
                esc(&report.profile),
                table("What was checked", &["Result", "Object", "Detail"], &rows)
            );
            // The objects are sound: the plugin checks the data it keeps elsewhere.
            if ok {
                body.push_str(&match api::plugin_verify(&ui, &name).await {
                    Ok(Some(a)) => format!(
                        "<p id=\"plugin-verify\">The plugin checks its own data too: {}, follow it there.</p>",
                        link("actionsets", a.name())
                    ),
                    Ok(None) => String::new(),
                    Err(e) => format!(
                        "<p id=\"plugin-verify\" role=\"alert\" class=\"error\">The plugin's own check could not start: {}</p>",
                        esc(&format!("{e:#}"))
                    ),
                });
            }
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, page(&ui, &format!("Verify {name}"), &body)).into_response()
        }
        Err(e) => refused(&ui, "Verify", e),
    }
}

pub async fn policy_form(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&ui, &f, &headers) {
        return csrf_refused(&ui);
    }
    if let Err(r) = workload(&ui, &name) {
        return *r;
    }
    let num = |k: &str| {
        f.get(k)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let policy = serde_json::json!({
        "apiVersion": "coffer.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": f.get("name").map(|s| s.trim()).unwrap_or_default()},
        "spec": {
            "frequency": f.get("frequency").map(|s| s.trim()).unwrap_or_default(),
            "selector": {"workloads": [name]},
            "retention": {"daily": num("daily"), "weekly": num("weekly"), "monthly": num("monthly")}
        }
    });
    let text = policy.to_string();
    if f.get("step").map(String::as_str) == Some("preview") {
        return preview(&ui, &name, &text, &f);
    }
    match ui.coffer.apply("dashboard", &text) {
        Ok(_) => see(&format!("/applications/{}", url(&name))),
        Err(e) => refused(&ui, "Policy refused", e),
    }
}

/// What the Policy would do over the next 7 days, and the same form to save it.
fn preview(ui: &Ui, app: &str, text: &str, f: &HashMap<String, String>) -> Response {
    let planned = match ui.coffer.plan_apply("dashboard", text) {
        Ok(p) => p,
        Err(e) => {
            return refused(ui, "Policy refused", e);
        }
    };
    let Some((_, _, _, value)) = planned.into_iter().next() else {
        return problem(
            ui,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Policy refused",
            "no policy",
        );
    };
    let sim = serde_json::from_value::<Policy>(value)
        .map_err(anyhow::Error::from)
        .and_then(|p| {
            crate::scheduler::simulate::simulate(
                &ui.coffer,
                &p,
                crate::scheduler::clock::from_env().now(),
                7,
            )
        });
    let sim = match sim {
        Ok(s) => s,
        Err(e) => {
            return refused(ui, "Policy refused", e);
        }
    };
    let rows: Vec<Vec<String>> = sim
        .existing
        .iter()
        .map(|x| {
            vec![
                esc(&x.restore_point),
                time(&x.time),
                x.deleted_at
                    .as_deref()
                    .map(time)
                    .unwrap_or_else(|| "kept".into()),
            ]
        })
        .collect();
    let hidden: String = f
        .iter()
        .filter(|(k, _)| *k != "step")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let body = format!(
        "<p>Over the next 7 days: {} ticks; {} new restore points made, {} still kept at the end; {} of existing restore points freed.</p>{}<form method=\"post\" action=\"/applications/{}/policy\">{hidden}<button type=\"submit\" name=\"step\" value=\"save\">Save policy</button></form>",
        sim.ticks,
        sim.future_made,
        sim.future_kept,
        bytes(sim.bytes_freed),
        table(
            "Existing restore points",
            &["Restore point", "Taken", "Deleted by retention"],
            &rows
        ),
        url(app),
    );
    page(ui, &format!("Preview policy for {app}"), &body).into_response()
}
