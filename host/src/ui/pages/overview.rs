//! The overview (what needs attention first) and the applications list.

use super::{Ui, badge, button_form, bytes, esc, link, page, problem, table, time, url};
use crate::model::{ActionSet, Kind, Phase, Policy, RestorePoint};
use crate::ui::api::{self, Application};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Arc;

fn app_row(ui: &Ui, a: &Application) -> Vec<String> {
    let reason = if a.reasons.is_empty() {
        String::new()
    } else {
        format!("<br><small>{}</small>", esc(&a.reasons.join("; ")))
    };
    vec![
        link("applications", &a.name),
        esc(&a.blueprint),
        format!("{}{reason}", badge(&a.compliance)),
        esc(&a.policies.join(", ")),
        a.restore_points.to_string(),
        button_form(
            ui,
            &format!("/applications/{}/backup", url(&a.name)),
            "Back up now",
            &[],
        ),
    ]
}

fn app_table(ui: &Ui, caption: &str, apps: &[Application]) -> String {
    let rows: Vec<Vec<String>> = apps.iter().map(|a| app_row(ui, a)).collect();
    table(
        caption,
        &[
            "Application",
            "Blueprint",
            "Compliance",
            "Policies",
            "Restore points",
            "Act",
        ],
        &rows,
    )
}

pub async fn overview(State(ui): State<Arc<Ui>>) -> Response {
    match render(&ui) {
        Ok(body) => page(&ui, "Overview", &body).into_response(),
        Err(e) => problem(
            &ui,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Overview",
            &format!("{e:#}"),
        ),
    }
}

fn render(ui: &Ui) -> anyhow::Result<String> {
    let c = &ui.coffer;
    let apps = api::applications(c)?;
    let count = |s: &str| apps.iter().filter(|a| a.compliance == s).count();
    let sets: Vec<ActionSet> = c.catalog.list(Kind::ActionSet)?;
    let now = crate::scheduler::clock::from_env().now();
    let since = now - jiff::SignedDuration::from_hours(24);
    let recent: Vec<&ActionSet> = sets
        .iter()
        .filter(|a| {
            a.status
                .start_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t >= since)
        })
        .collect();
    let by_phase = |p: Phase| recent.iter().filter(|a| a.status.phase == p).count();
    let mut body = format!(
        "<section aria-labelledby=\"h-state\"><h2 id=\"h-state\">At a glance</h2><div class=\"cards\"><div class=\"card\"><strong>{}</strong>{}</div><div class=\"card\"><strong>{}</strong>{}</div><div class=\"card\"><strong>{}</strong>{}</div><div class=\"card\"><strong>{}</strong>actions in 24 h: {} failed, {} completed, {} running</div></div></section>",
        count("NonCompliant"),
        badge("NonCompliant"),
        count("Compliant"),
        badge("Compliant"),
        count("Unmanaged"),
        badge("Unmanaged"),
        recent.len(),
        by_phase(Phase::Failed),
        by_phase(Phase::Completed),
        by_phase(Phase::Running) + by_phase(Phase::Pending),
    );
    // Anything failing first: NonCompliant applications, failed actions.
    let failing: Vec<Application> = apps
        .iter()
        .filter(|a| a.compliance == "NonCompliant")
        .cloned()
        .collect();
    if !failing.is_empty() {
        body.push_str(&app_table(ui, "Needs attention", &failing));
    }
    let failed: Vec<Vec<String>> = recent
        .iter()
        .filter(|a| a.status.phase == Phase::Failed)
        .map(|a| {
            vec![
                link("actionsets", a.name()),
                esc(&a.spec.workload),
                time(a.status.start_time.as_deref().unwrap_or_default()),
                esc(a.status.error.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    if !failed.is_empty() {
        body.push_str(&table(
            "Failed actions (24 h)",
            &["ActionSet", "Application", "Started", "Error"],
            &failed,
        ));
    }
    body.push_str(&app_table(ui, "Applications", &apps));

    let policies: Vec<Policy> = c.catalog.list(Kind::Policy)?;
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let last = p.status.runs.last();
            vec![
                format!(
                    "<a href=\"/policies#{}\">{}</a>",
                    url(p.name()),
                    esc(p.name())
                ),
                esc(&p.spec.frequency),
                time(&next_run(p, now).unwrap_or_default()),
                last.map(|r| format!("{} {}", time(&r.tick), badge(&r.result)))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    body.push_str(&table(
        "Policies",
        &["Policy", "Frequency", "Next run", "Last run"],
        &rows,
    ));

    let rps: Vec<RestorePoint> = c.catalog.list(Kind::RestorePoint)?;
    let mut used: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for rp in &rps {
        let e = used.entry(rp.spec.profile.as_str()).or_default();
        e.0 += 1;
        e.1 += rp.spec.stored_size;
    }
    let rows: Vec<Vec<String>> = used
        .iter()
        .map(|(p, (n, b))| vec![esc(p), n.to_string(), bytes(*b)])
        .collect();
    body.push_str(&table(
        "Storage used per Profile",
        &["Profile", "Restore points", "Stored"],
        &rows,
    ));
    Ok(body)
}

/// When a Policy runs next: what the scheduler recorded, else from its rules (no
/// scheduler running yet); none when paused or on demand.
fn next_run(p: &Policy, now: jiff::Timestamp) -> Option<String> {
    if p.spec.paused {
        return None;
    }
    if let Some(t) = &p.status.next_tick {
        return Some(t.clone());
    }
    let rules = crate::policy::rules(&p.spec).ok()?;
    rules
        .frequency
        .next_after(now, &rules.timezone)
        .map(|t| t.to_string())
}

pub async fn applications(State(ui): State<Arc<Ui>>) -> Response {
    match api::applications(&ui.coffer) {
        Ok(apps) => page(
            &ui,
            "Applications",
            &app_table(&ui, "Every Workload", &apps),
        )
        .into_response(),
        Err(e) => problem(
            &ui,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Applications",
            &format!("{e:#}"),
        ),
    }
}
