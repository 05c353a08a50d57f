//! `get` and `describe`: tables for people, JSON and YAML for scripts.

use super::OutputFormat;
use crate::action::Coffer;
use crate::model::{
    ActionSet, BlueprintBinding, EncryptionSpec, Kind, ProfileType, RestorePoint, Workload,
};
use anyhow::{Result, bail};
use serde::Serialize;
use std::process::ExitCode;

pub fn print_one<T: Serialize>(obj: &T, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => out!("{}", serde_json::to_string_pretty(obj)?),
        OutputFormat::Yaml | OutputFormat::Table => out_raw!("{}", serde_yaml_ng::to_string(obj)?),
    }
    Ok(())
}

fn print_list<T: Serialize>(items: &[T], format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => out!("{}", serde_json::to_string_pretty(items)?),
        _ => out_raw!("{}", serde_yaml_ng::to_string(items)?),
    }
    Ok(())
}

pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let s: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out!("{}", s.join("   "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn short_time(t: &Option<String>) -> String {
    t.as_deref()
        .map(|s| s.replace('T', " ").trim_end_matches('Z').to_string())
        .unwrap_or_default()
}

pub fn get(c: &Coffer, kind: Kind, name: Option<&str>, format: OutputFormat) -> Result<ExitCode> {
    match kind {
        Kind::Blueprint => {
            let mut all = c.blueprints()?;
            if let Some(n) = name {
                all.retain(|(b, _)| b.name() == n);
                if all.is_empty() {
                    c.blueprint(n)?;
                }
            }
            if format != OutputFormat::Table {
                let objs: Vec<_> = all.into_iter().map(|(b, _)| b).collect();
                return finish(name, objs, format);
            }
            table(
                &["NAME", "PLUGIN", "SOURCE"],
                all.iter()
                    .map(|(b, s)| {
                        let p = &b.spec.plugin;
                        let plugin = p
                            .builtin
                            .as_ref()
                            .map(|n| format!("builtin:{n}"))
                            .or_else(|| p.path.as_ref().map(|x| x.display().to_string()))
                            .unwrap_or_default();
                        vec![b.name().to_string(), plugin, s.as_str().to_string()]
                    })
                    .collect(),
            );
            // One Blueprint: also both sides of its capabilities.
            if let (Some(_), [(b, _)]) = (name, all.as_slice()) {
                out!();
                describe_grants(b)?;
            }
        }
        Kind::Profile => {
            let mut all = c.profiles()?;
            if let Some(n) = name {
                all.retain(|(p, _)| p.name() == n);
                if all.is_empty() {
                    c.profile(n)?;
                }
            }
            if format != OutputFormat::Table {
                let objs: Vec<_> = all.into_iter().map(|(p, _)| p).collect();
                return finish(name, objs, format);
            }
            table(
                &["NAME", "TYPE", "WHERE", "ENCRYPTION", "LOCK", "SOURCE"],
                all.iter()
                    .map(|(p, s)| {
                        vec![
                            p.name().to_string(),
                            p.spec.kind.as_str().into(),
                            profile_where(&p.spec),
                            match &p.spec.encryption {
                                Some(EncryptionSpec::Age(a)) => {
                                    format!("age ({} recipient(s))", a.recipients.len())
                                }
                                Some(EncryptionSpec::Keyword(k)) => k.clone(),
                                None => "none".into(),
                            },
                            p.spec
                                .object_lock
                                .as_ref()
                                .map(|l| {
                                    format!("{} {}d", l.mode.header_value().to_lowercase(), l.days)
                                })
                                .unwrap_or_else(|| "-".into()),
                            s.as_str().to_string(),
                        ]
                    })
                    .collect(),
            );
        }
        Kind::BlueprintBinding => {
            let all = filtered::<BlueprintBinding>(c, kind, name)?;
            if format != OutputFormat::Table {
                return finish(name, all, format);
            }
            let list = |v: &[String]| {
                if v.is_empty() {
                    "*".to_string()
                } else {
                    v.join(",")
                }
            };
            let pairs = |m: &std::collections::BTreeMap<String, String>| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            table(
                &[
                    "NAME",
                    "BLUEPRINT",
                    "KINDS",
                    "NAMESPACES",
                    "LABELS",
                    "ANNOTATIONS",
                    "CREATED",
                ],
                all.iter()
                    .map(|b| {
                        let s = &b.spec.selector;
                        vec![
                            b.name().to_string(),
                            b.spec.blueprint.clone(),
                            list(&s.kinds),
                            list(&s.namespaces),
                            pairs(&s.labels),
                            pairs(&s.annotations),
                            b.metadata.creation_timestamp.clone().unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
        }
        Kind::Policy => {
            let all = filtered::<crate::model::Policy>(c, kind, name)?;
            if format != OutputFormat::Table {
                return finish(name, all, format);
            }
            policy_table(&all, crate::scheduler::clock::from_env().now());
        }
        Kind::Signer => {
            let all = filtered::<crate::model::Signer>(c, kind, name)?;
            if format != OutputFormat::Table {
                return finish(name, all, format);
            }
            table(
                &["NAME", "TYPE", "REGION", "ENDPOINT", "CREDENTIALS"],
                all.iter()
                    .map(|s| {
                        vec![
                            s.name().to_string(),
                            "aws-sigv4".into(),
                            s.spec.region.clone(),
                            s.spec.endpoint.clone().unwrap_or_else(|| "aws".into()),
                            if s.spec.credentials.is_some() {
                                "static (by reference)".into()
                            } else {
                                "aws chain".into()
                            },
                        ]
                    })
                    .collect(),
            );
        }
        Kind::Workload => {
            let all = filtered::<Workload>(c, kind, name)?;
            if format != OutputFormat::Table {
                return finish(name, all, format);
            }
            table(
                &["NAME", "BLUEPRINT", "PROFILE"],
                all.iter()
                    .map(|w| {
                        vec![
                            w.name().to_string(),
                            w.spec.blueprint.clone(),
                            w.spec.profile.clone().unwrap_or_else(|| "default".into()),
                        ]
                    })
                    .collect(),
            );
        }
        Kind::ActionSet => {
            let all = filtered::<ActionSet>(c, kind, name)?;
            if format != OutputFormat::Table {
                return finish(name, all, format);
            }
            table(
                &[
                    "NAME", "ACTION", "WORKLOAD", "PHASE", "STARTED", "BYTES", "RESULT",
                ],
                all.iter()
                    .map(|a| {
                        let result = match (&a.status.restore_point, &a.status.error) {
                            (_, Some(e)) => e.chars().take(80).collect(),
                            (Some(rp), None) => format!("RestorePoint {rp}"),
                            _ => String::new(),
                        };
                        vec![
                            a.name().to_string(),
                            a.spec.action.clone(),
                            a.spec.workload.clone(),
                            a.status.phase.as_str().to_string(),
                            short_time(&a.status.start_time),
                            bytes(a.status.bytes),
                            result,
                        ]
                    })
                    .collect(),
            );
        }
        Kind::RestorePoint => {
            let all = filtered::<RestorePoint>(c, kind, name)?;
            if format != OutputFormat::Table {
                return finish(name, all, format);
            }
            table(
                &[
                    "NAME",
                    "WORKLOAD",
                    "CREATED",
                    "SIZE",
                    "STORED",
                    "ARTIFACTS",
                    "QUIESCED",
                    "PROFILE",
                    "BASE",
                ],
                all.iter()
                    .map(|r| {
                        vec![
                            r.name().to_string(),
                            r.spec.workload.clone(),
                            short_time(&Some(r.spec.end_time.clone())),
                            bytes(r.spec.size),
                            bytes(r.spec.stored_size),
                            r.spec.artifacts.len().to_string(),
                            super::consistency::window(r.spec.quiesce.as_ref()),
                            r.spec.profile.clone(),
                            r.spec.base.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn filtered<T: serde::de::DeserializeOwned>(
    c: &Coffer,
    kind: Kind,
    name: Option<&str>,
) -> Result<Vec<T>> {
    match name {
        None => c.catalog.list(kind),
        Some(n) => match c.catalog.get(kind, n)? {
            Some(o) => Ok(vec![o]),
            None => bail!("{kind} {n} not found"),
        },
    }
}

fn finish<T: Serialize>(
    name: Option<&str>,
    mut objs: Vec<T>,
    format: OutputFormat,
) -> Result<ExitCode> {
    if name.is_some() && objs.len() == 1 {
        print_one(&objs.remove(0), format)?;
    } else {
        print_list(&objs, format)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn describe(c: &Coffer, kind: Kind, name: &str) -> Result<ExitCode> {
    match kind {
        Kind::ActionSet => {
            // With its audit trail (kept apart from the document in the catalog).
            let a = c.action_set(name)?;
            describe_action_set(&a);
        }
        Kind::Blueprint => {
            let (b, source) = c.blueprint(name)?;
            print_one(&b, OutputFormat::Yaml)?;
            out!("# source: {}", source.as_str());
            describe_grants(&b)?;
        }
        Kind::Policy => super::policy_cmd::describe(c, name)?,
        Kind::RestorePoint => {
            get(c, kind, Some(name), OutputFormat::Yaml)?;
            let built_on = c.dependents(name)?;
            if !built_on.is_empty() {
                out!(
                    "# the base of: {} (delete those first)",
                    built_on.join(", ")
                );
            }
        }
        Kind::Workload => {
            get(c, kind, Some(name), OutputFormat::Yaml)?;
            describe_workload(c, name)?;
        }
        _ => {
            get(c, kind, Some(name), OutputFormat::Yaml)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a Workload needs besides coffer: PostgreSQL's settings for a pgBackRest repository
/// on its Profile.
fn describe_workload(c: &Coffer, name: &str) -> Result<()> {
    use crate::cap::exec::profile_repo;
    let w = c.workload(name)?;
    if profile_repo::wanted(&w) {
        let profile = w.spec.profile.as_deref().unwrap_or("default");
        let (p, _) = c.profile(profile)?;
        let repo = profile_repo::locate(&w, &p).map_err(|e| anyhow::anyhow!(e))?;
        out!("");
        for line in profile_repo::postgres_settings(&w, &repo) {
            out!("{line}");
        }
    }
    Ok(())
}

/// An ActionSet in detail: what, how it ended, every capability call, the plugin's logs.
pub fn describe_action_set(a: &ActionSet) {
    out!("Name:         {}", a.name());
    out!(
        "Action:       {} of Workload {} (Blueprint {}, Profile {})",
        a.spec.action,
        a.spec.workload,
        a.status.blueprint.as_deref().unwrap_or(&a.spec.blueprint),
        a.status.profile.as_deref().unwrap_or(&a.spec.profile)
    );
    if let Some(rp) = &a.spec.restore_point {
        out!("From:         RestorePoint {rp}");
    }
    out!("Phase:        {}", a.status.phase.as_str());
    if let Some(r) = &a.status.runner {
        out!("Runner:       {r}");
    }
    out!("Started:      {}", short_time(&a.status.start_time));
    out!("Ended:        {}", short_time(&a.status.end_time));
    out!("Bytes:        {}", bytes(a.status.bytes));
    if let Some(rp) = &a.status.restore_point {
        out!("RestorePoint: {rp}");
    }
    if let Some(e) = &a.status.error {
        out!("Error:        {e}");
    }
    super::consistency::describe(a);
    if !a.status.outputs.is_empty() {
        out!("Outputs:");
        for (k, v) in &a.status.outputs {
            out!("  {k}: {v}");
        }
    }
    out!("Capability calls:");
    table(
        &[
            "  AT",
            "CAPABILITY",
            "TARGET",
            "RESULT",
            "MS",
            "BYTES",
            "ARGS",
        ],
        a.status
            .audit
            .iter()
            .map(|e| {
                vec![
                    format!("  {}ms", e.at_ms),
                    e.capability.clone(),
                    e.target.clone(),
                    e.result.clone(),
                    e.duration_ms.to_string(),
                    if e.bytes > 0 {
                        bytes(e.bytes)
                    } else {
                        String::new()
                    },
                    e.args.clone(),
                ]
            })
            .collect(),
    );
    if a.status.audit_dropped > 0 {
        out!("  ({} more calls not recorded)", a.status.audit_dropped);
    }
    if !a.status.logs.is_empty() {
        out!("Plugin logs:");
        for l in &a.status.logs {
            let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out!(
                "  {}ms {:<5} {} {}",
                l.at_ms,
                l.level,
                l.message,
                fields.join(" ")
            );
        }
    }
}

/// Both sides of every capability: what the plugin declares, what the Blueprint grants.
fn describe_grants(b: &crate::model::Blueprint) -> Result<()> {
    let plugin = crate::plugin::PluginBytes::resolve(&b.spec.plugin, b.name())?;
    let m = crate::plugin::inspect(&plugin)?.manifest;
    out!(
        "Capabilities of plugin {} {} (sha256 {}):",
        m.name,
        m.version,
        plugin.sha256
    );
    grants_table(&m.capabilities, &b.spec.grants);
    Ok(())
}

/// Declared vs granted, and the effect, per capability.
pub(super) fn grants_table(d: &coffer_manifest::Capabilities, g: &coffer_manifest::Capabilities) {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |cap: &str, what: String, declared: bool, granted: bool| {
        let effect = if declared && granted {
            "allowed"
        } else if declared {
            "denied (not granted)"
        } else {
            "no effect (not declared)"
        };
        rows.push(vec![
            cap.to_string(),
            what,
            yes(declared),
            yes(granted),
            effect.to_string(),
        ]);
    };
    let exec: std::collections::BTreeSet<&String> = d.exec.iter().chain(g.exec.iter()).collect();
    for e in exec {
        row("exec", e.clone(), d.exec.contains(e), g.exec.contains(e));
    }
    for a in [
        coffer_manifest::LocationAccess::Read,
        coffer_manifest::LocationAccess::Write,
        coffer_manifest::LocationAccess::Delete,
    ] {
        if d.allows_location(a) || g.allows_location(a) {
            row(
                "location",
                a.as_str().to_string(),
                d.allows_location(a),
                g.allows_location(a),
            );
        }
    }
    let secrets: std::collections::BTreeSet<&String> =
        d.secrets.iter().chain(g.secrets.iter()).collect();
    for s in secrets {
        row("secret", s.clone(), d.allows_secret(s), g.allows_secret(s));
    }
    if d.snapshot || g.snapshot {
        row("snapshot", String::new(), d.snapshot, g.snapshot);
    }
    table(
        &["  CAPABILITY", "WHAT", "DECLARED", "GRANTED", "EFFECT"],
        rows.into_iter()
            .map(|mut r| {
                r[0] = format!("  {}", r[0]);
                r
            })
            .collect(),
    );
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Where a Profile stores things, in one cell.
fn profile_where(spec: &crate::model::ProfileSpec) -> String {
    let prefix = spec
        .prefix
        .as_deref()
        .map(|p| format!("/{}", p.trim_matches('/')))
        .unwrap_or_default();
    match spec.kind {
        ProfileType::File => spec
            .path
            .as_ref()
            .map(|x| x.display().to_string())
            .unwrap_or_default(),
        ProfileType::S3 => format!(
            "s3://{}{prefix}{}",
            spec.bucket.as_deref().unwrap_or("?"),
            spec.endpoint
                .as_deref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        ),
        ProfileType::Gcs => format!("gs://{}{prefix}", spec.bucket.as_deref().unwrap_or("?")),
        ProfileType::Azure => format!(
            "azure://{}/{}{prefix}",
            spec.account.as_deref().unwrap_or("?"),
            spec.container.as_deref().unwrap_or("?")
        ),
    }
}

/// Policies as a table: schedule, what they select, retention, next tick, last run.
pub(super) fn policy_table(all: &[crate::model::Policy], now: jiff::Timestamp) {
    table(
        &[
            "NAME",
            "FREQUENCY",
            "TIMEZONE",
            "SELECTS",
            "RETENTION",
            "NEXT",
            "LAST RUN",
        ],
        all.iter()
            .map(|p| {
                let r = &p.spec.retention;
                let retention = [
                    ("h", r.hourly),
                    ("d", r.daily),
                    ("w", r.weekly),
                    ("m", r.monthly),
                    ("y", r.yearly),
                ]
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(u, n)| format!("{n}{u}"))
                .collect::<Vec<_>>()
                .join(" ");
                let next = match crate::policy::rules(&p.spec) {
                    Err(e) => format!("invalid: {e}"),
                    Ok(_) if p.spec.paused => "paused".into(),
                    Ok(rules) => rules
                        .frequency
                        .next_after(now, &rules.timezone)
                        .map(|t| {
                            t.to_zoned(rules.timezone.clone())
                                .strftime("%F %T %Z")
                                .to_string()
                        })
                        .unwrap_or_else(|| "on demand".into()),
                };
                let s = &p.spec.selector;
                let mut selects: Vec<String> = s.workloads.clone();
                selects.extend(s.kinds.iter().map(|k| format!("kind={k}")));
                selects.extend(s.namespaces.iter().map(|n| format!("ns={n}")));
                selects.extend(s.labels.iter().map(|(k, v)| format!("{k}={v}")));
                selects.extend(s.annotations.iter().map(|(k, v)| format!("@{k}={v}")));
                let last = match (&p.status.running_tick, p.status.runs.last()) {
                    (Some(t), _) => format!("Running ({t})"),
                    (None, Some(r)) => format!("{} ({})", r.result, r.tick),
                    (None, None) => "-".into(),
                };
                vec![
                    p.name().to_string(),
                    p.spec.frequency.clone(),
                    p.spec.timezone.clone().unwrap_or_else(|| "UTC".into()),
                    selects.join(","),
                    retention,
                    next,
                    last,
                ]
            })
            .collect(),
    );
}
