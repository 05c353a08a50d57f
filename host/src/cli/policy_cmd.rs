//! `coffer policy run|simulate`: one tick now, and what a Policy will keep and delete.

use super::OutputFormat;
use crate::action::Coffer;
use crate::model::{Kind, Policy};
use crate::scheduler::{simulate, tick};
use anyhow::{Result, anyhow};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run one tick of a Policy now, as the scheduler would: a backup of each selected
    /// workload, then retention over the Policy's restore points. Exit 1 if any failed.
    Run {
        name: String,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show which restore points a Policy keeps and deletes over the next days (each tick
    /// assumed to succeed), and the bytes freed, changing nothing.
    Simulate {
        name: String,
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

fn policy(coffer: &Coffer, name: &str) -> Result<Policy> {
    coffer
        .catalog
        .get::<Policy>(Kind::Policy, name)?
        .ok_or_else(|| anyhow!("Policy {name} not found; `coffer get policies` lists them"))
}

pub async fn command(coffer: &Coffer, c: PolicyCommand) -> Result<ExitCode> {
    match c {
        PolicyCommand::Run { name, output } => {
            let p = policy(coffer, &name)?;
            let report = tick::tick(
                coffer,
                &p,
                crate::scheduler::clock::from_env().now(),
                tick::TickKind::Manual,
            )
            .await?;
            let failed = report
                .backups
                .iter()
                .chain(&report.deleted)
                .any(|o| o.result == "Failed");
            if output == OutputFormat::Table {
                for o in &report.backups {
                    out!(
                        "backup {}: {} {}{}",
                        o.workload,
                        o.result,
                        o.restore_point.as_deref().unwrap_or(&o.action_set),
                        o.error
                            .as_ref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    );
                }
                for o in &report.deleted {
                    out!(
                        "retention deleted {}: {}{}",
                        o.restore_point.as_deref().unwrap_or_default(),
                        o.result,
                        o.error
                            .as_ref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    );
                }
            } else {
                super::output::print_one(&report, output)?;
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        PolicyCommand::Simulate { name, days, output } => {
            let p = policy(coffer, &name)?;
            let s =
                simulate::simulate(coffer, &p, crate::scheduler::clock::from_env().now(), days)?;
            if output != OutputFormat::Table {
                super::output::print_one(&s, output)?;
                return Ok(ExitCode::SUCCESS);
            }
            print_simulation(&s);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_simulation(s: &simulate::Simulation) {
    out!(
        "Policy {}: {} tick(s) until {}; they make {} restore point(s), {} still kept then",
        s.policy,
        s.ticks,
        s.until,
        s.future_made,
        s.future_kept
    );
    for f in &s.existing {
        out!(
            "  {} {} {}: {}",
            f.workload,
            f.restore_point,
            f.time,
            fate(f)
        );
    }
    out!("bytes freed: {}", s.bytes_freed);
}

fn fate(f: &simulate::Fate) -> String {
    match (&f.deleted_at, f.kept_for.is_empty()) {
        (Some(at), _) => format!("deleted at {at}"),
        (None, true) => "deleted by the next run".into(),
        (None, false) => format!("kept ({})", f.kept_for.join(", ")),
    }
}

/// `coffer apply --dry-run` of a Policy: what it keeps and deletes over the next 7 days as
/// it would be applied, and which restore points that changes against the Policy stored
/// now.
pub fn preview(coffer: &Coffer, new: Policy) -> Result<()> {
    let now = crate::scheduler::clock::from_env().now();
    let after = simulate::simulate(coffer, &new, now, 7)?;
    print_simulation(&after);
    let Some(old) = coffer.catalog.get::<Policy>(Kind::Policy, new.name())? else {
        return Ok(());
    };
    let before = simulate::simulate(coffer, &old, now, 7)?;
    let was: std::collections::BTreeMap<&str, String> = before
        .existing
        .iter()
        .map(|f| (f.restore_point.as_str(), fate(f)))
        .collect();
    let changed: Vec<String> = after
        .existing
        .iter()
        .filter_map(|f| {
            let before = was.get(f.restore_point.as_str())?;
            let now = fate(f);
            (*before != now).then(|| format!("  {}: {before} -> {now}", f.restore_point))
        })
        .collect();
    if changed.is_empty() {
        out!("against the Policy stored now: no restore point's fate changes");
    } else {
        out!("against the Policy stored now:");
        for c in changed {
            out!("{c}");
        }
    }
    out!(
        "bytes freed: {} (now: {})",
        after.bytes_freed,
        before.bytes_freed
    );
    Ok(())
}

/// `coffer get compliance`.
pub fn compliance(coffer: &Coffer, output: OutputFormat) -> Result<ExitCode> {
    let rows = crate::scheduler::compliance::compliance(
        coffer,
        crate::scheduler::clock::from_env().now(),
    )?;
    print_compliance(&rows, output)
}

/// The compliance table (or `-o json|yaml`).
pub fn print_compliance(
    rows: &[crate::model::Compliance],
    output: OutputFormat,
) -> Result<ExitCode> {
    if output != OutputFormat::Table {
        super::output::print_one(&rows, output)?;
        return Ok(ExitCode::SUCCESS);
    }
    super::output::table(
        &[
            "WORKLOAD", "POLICY", "STATE", "REASON", "NEWEST", "NEXT RUN",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.workload.clone(),
                    r.policy.clone().unwrap_or_else(|| "-".into()),
                    r.state.clone(),
                    match (&r.reason, &r.message) {
                        (Some(reason), Some(m)) => format!("{reason}: {m}"),
                        (Some(reason), None) => reason.clone(),
                        (None, _) => "-".into(),
                    },
                    r.newest_restore_point.clone().unwrap_or_else(|| "-".into()),
                    r.next_run.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The newest of `workload`'s restore points taken at or before `at` (`restore --at`),
/// said to the user.
pub fn restore_point_at(coffer: &Coffer, workload: &str, at: &str) -> Result<String> {
    Ok(said(coffer.restore_point_at(workload, at)?))
}

/// Tell the user which restore point a point in time chose; its name.
pub fn said(c: crate::action::at::Chosen) -> String {
    eprintln!(
        "restoring RestorePoint {} (taken {}), the newest at or before {}",
        c.name, c.taken, c.at
    );
    c.name
}

/// `coffer describe policy NAME`: its rules, next tick, last 20 runs, and each selected
/// workload's restore points with why retention keeps them.
pub fn describe(coffer: &Coffer, name: &str) -> Result<()> {
    let p = policy(coffer, name)?;
    describe_status(&p);
    for (w, judged) in crate::scheduler::tick::verdicts(coffer, &p)? {
        out!("Restore points of {w}:");
        for (rp, v) in judged {
            let why = if v.keep {
                format!("kept ({})", v.reasons.join(", "))
            } else {
                "deleted by the next tick".into()
            };
            out!("  {}  {why}", rp.name());
        }
    }
    Ok(())
}

/// A Policy's rules, next tick and last 20 runs (local mode and on a cluster).
pub fn describe_status(p: &Policy) {
    let now = crate::scheduler::clock::from_env().now();
    out!("Name:        {}", p.name());
    out!(
        "Frequency:   {} ({})",
        p.spec.frequency,
        p.spec.timezone.as_deref().unwrap_or("UTC")
    );
    let r = &p.spec.retention;
    out!(
        "Retention:   hourly {} daily {} weekly {} monthly {} yearly {}",
        r.hourly,
        r.daily,
        r.weekly,
        r.monthly,
        r.yearly
    );
    match crate::policy::rules(&p.spec) {
        Err(e) => out!("Next tick:   none: {e}"),
        Ok(_) if p.spec.paused => out!("Next tick:   none: paused"),
        Ok(rules) => out!(
            "Next tick:   {}",
            rules
                .frequency
                .next_after(now, &rules.timezone)
                .map(|t| t.to_string())
                .unwrap_or_else(|| "on demand (`coffer policy run`)".into())
        ),
    }
    out!(
        "Last tick:   {}{}",
        p.status.last_tick.as_deref().unwrap_or("none yet"),
        p.status
            .running_tick
            .as_ref()
            .map(|t| format!(" (running: {t})"))
            .unwrap_or_default()
    );
    if let Some(s) = &p.spec.stream {
        out!(
            "Stream:      every {}{}",
            s.every,
            p.spec
                .full_every
                .map(|n| format!(", a full backup every {n}"))
                .unwrap_or_default()
        );
        for st in &p.status.streams {
            out!(
                "  {}: {} ({} links, lag {} records, last link {}; {} made, {} found nothing new){}",
                st.workload,
                st.restore_point
                    .as_deref()
                    .unwrap_or("no restore point yet"),
                st.links,
                st.lag_records.map_or("-".into(), |l| l.to_string()),
                st.last_link.as_deref().unwrap_or("never"),
                st.made,
                st.unchanged,
                st.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    out!("Runs (newest last):");
    let runs = &p.status.runs;
    for run in &runs[runs.len().saturating_sub(20)..] {
        let count = if run.count > 1 {
            format!(" x{}", run.count)
        } else {
            String::new()
        };
        out!(
            "  {}  {}{count}{}",
            run.tick,
            run.result,
            run.message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
}
