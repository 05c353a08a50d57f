//! `coffer profile validate`, `coffer verify` and `coffer location ls|cat|rm`.

use super::{OutputFormat, progress};
use crate::action::Coffer;
use crate::storage::{Location, ops};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Probe a Profile: LIST, PUT, GET and DELETE with a throwaway object under
    /// `coffer-probe/`, its encryption keys, and Object Lock when asked for. Exit 1 if any
    /// check fails.
    Validate {
        name: String,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Subcommand)]
pub enum LocationCommand {
    /// List stored objects (keys relative to the Profile), with sizes.
    Ls {
        /// Only keys under this prefix, e.g. `restorepoints/shop-db`.
        prefix: Option<String>,
        #[arg(long, default_value = "default")]
        profile: String,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Write an object to stdout, decrypted (`.age`) and decompressed (`.zst`) unless --raw.
    Cat {
        key: String,
        #[arg(long, default_value = "default")]
        profile: String,
        /// The stored bytes as they are.
        #[arg(long)]
        raw: bool,
    },
    /// Remove objects. Objects of a RestorePoint are refused (use `coffer delete`) unless --force.
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long, default_value = "default")]
        profile: String,
        /// Everything under each key (a prefix), and multipart uploads left open there.
        #[arg(short, long)]
        recursive: bool,
        #[arg(long)]
        force: bool,
    },
}

pub async fn profile(coffer: &Coffer, cmd: ProfileCommand) -> Result<ExitCode> {
    let ProfileCommand::Validate { name, output } = cmd;
    let (p, _) = coffer.profile(&name)?;
    let probes = ops::validate_profile(&p, &coffer.credentials).await?;
    let ok = probes.iter().all(|p| p.ok);
    match output {
        OutputFormat::Table => {
            out!("Profile {name} ({})", p.spec.kind.as_str());
            for pr in &probes {
                out!(
                    "  {:<12} {:<4} {}",
                    pr.check,
                    if pr.ok { "ok" } else { "FAIL" },
                    pr.detail
                );
            }
        }
        f => print_value(
            &serde_json::json!({"profile": name, "ok": ok, "checks": probes}),
            f,
        )?,
    }
    if !ok {
        eprintln!("error: Profile {name} failed validation; see the FAIL lines above");
    }
    Ok(exit(ok))
}

pub async fn verify(coffer: &Coffer, name: &str, output: OutputFormat) -> Result<ExitCode> {
    let rp = coffer.restore_point(name)?;
    let (profile, _) = coffer
        .profile(&rp.spec.profile)
        .with_context(|| format!("RestorePoint {name}: its Profile"))?;
    let loc = Location::from_profile(&profile, &coffer.credentials)?;
    let bytes = Arc::new(AtomicU64::new(0));
    let report = progress::follow_bytes(
        format!("verify {name}"),
        Some(rp.spec.size),
        &bytes,
        ops::verify(&loc, coffer.manifest_key()?, &rp, bytes.clone()),
    )
    .await?;
    let ok = report.ok();
    match output {
        OutputFormat::Table => {
            out!(
                "RestorePoint {name} in Profile {}: {}",
                report.profile,
                if ok { "verified" } else { "FAILED" }
            );
            let m = &report.manifest;
            out!("  {:<4} {}", if m.ok { "ok" } else { "FAIL" }, m.detail);
            for o in &report.objects {
                out!(
                    "  {:<4} {}: {}",
                    if o.ok { "ok" } else { "FAIL" },
                    o.stored_key,
                    o.detail
                );
            }
        }
        f => print_value(&serde_json::to_value(&report)?, f)?,
    }
    if !ok {
        eprintln!("error: RestorePoint {name} failed verification");
        return Ok(exit(false));
    }
    if !coffer.plugin_verifies(&rp)? {
        return Ok(exit(true));
    }
    // The objects are sound; a plugin whose data lives elsewhere (pgBackRest's repository)
    // checks that data too, as an action of its own on the RestorePoint.
    let req = super::actions::request(
        crate::model::ActionKind::Other("verify".into()),
        None,
        None,
        Some(name.to_string()),
        &[],
    )?;
    super::actions::run(coffer, req, None).await
}

pub async fn location(coffer: &Coffer, cmd: LocationCommand) -> Result<ExitCode> {
    match cmd {
        LocationCommand::Ls {
            prefix,
            profile,
            output,
        } => {
            let loc = open(coffer, &profile)?;
            let items = ops::list(&loc, prefix.as_deref()).await?;
            match output {
                OutputFormat::Table => {
                    for i in &items {
                        out!("{:>12}  {}  {}", i.size, &i.last_modified[..19], i.key);
                    }
                }
                f => print_value(&serde_json::to_value(&items)?, f)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        LocationCommand::Cat { key, profile, raw } => {
            let loc = open(coffer, &profile)?;
            let mut stdout = std::io::stdout();
            let res = ops::cat(&loc, &key, raw, &mut stdout)
                .await
                .and_then(|_| Ok(std::io::Write::flush(&mut stdout)?));
            match res {
                // A reader that stopped early (`| head`) is not an error.
                Err(e) if format!("{e:#}").contains("Broken pipe") => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e),
                Ok(()) => Ok(ExitCode::SUCCESS),
            }
        }
        LocationCommand::Rm {
            keys,
            profile,
            recursive,
            force,
        } => {
            let loc = open(coffer, &profile)?;
            let protected = coffer
                .catalog
                .list::<crate::model::RestorePoint>(crate::model::Kind::RestorePoint)?;
            for key in keys {
                for removed in ops::remove(&protected, &loc, &key, recursive, force).await? {
                    out!("removed {removed}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(coffer: &Coffer, profile: &str) -> Result<Location> {
    let (p, _) = coffer.profile(profile)?;
    Location::from_profile(&p, &coffer.credentials)
}

fn print_value(v: &serde_json::Value, f: OutputFormat) -> Result<()> {
    match f {
        OutputFormat::Yaml => out_raw!("{}", serde_yaml_ng::to_string(v)?),
        _ => out!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
