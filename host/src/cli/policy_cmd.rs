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
            let report =
                tick::tick(coffer, &p, jiff::Timestamp::now(), tick::TickKind::Manual).await?;
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
            let s = simulate::simulate(coffer, &p, jiff::Timestamp::now(), days)?;
            if output != OutputFormat::Table {
                super::output::print_one(&s, output)?;
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "Policy {}: {} tick(s) until {}; they make {} restore point(s), {} still kept then",
                s.policy,
                s.ticks,
                s.until,
                s.future_made,
                s.future_kept
            );
            for f in &s.existing {
                let fate = match (&f.deleted_at, f.kept_for.is_empty()) {
                    (Some(at), _) => format!("deleted at {at}"),
                    (None, true) => "deleted by the next run".into(),
                    (None, false) => format!("kept ({})", f.kept_for.join(", ")),
                };
                out!("  {} {} {}: {fate}", f.workload, f.restore_point, f.time);
            }
            out!("bytes freed: {}", s.bytes_freed);
            Ok(ExitCode::SUCCESS)
        }
    }
}
