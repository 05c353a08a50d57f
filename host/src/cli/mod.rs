//! The `coffer` command line.

/// Print a line on stdout; a closed pipe (`coffer get ... | head`) ends the program quietly
/// instead of panicking.
macro_rules! out {
    () => { $crate::cli::emit("\n") };
    ($($t:tt)*) => { $crate::cli::emit(&format!("{}\n", format_args!($($t)*))) };
}
/// `out!` without the newline.
macro_rules! out_raw {
    ($($t:tt)*) => { $crate::cli::emit(&format!($($t)*)) };
}

mod actions;
mod cluster;
mod consistency;
mod logging;
pub(crate) mod output;
mod plugin_cmd;
mod plugin_dev;
mod plugin_new;
mod policy_cmd;
mod progress;
mod storage_cmd;

use crate::action::Coffer;
use crate::home::Home;
use crate::model::ActionKind;
use crate::model::Kind;
use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "Application-level backup, restore and delete, run by sandboxed wasm plugins",
    long_about = "coffer runs blueprint plugins (WebAssembly components) that back up, restore and delete \
application data. In local mode its state (catalog, default location, compile cache) lives in \
COFFER_HOME (default: $XDG_DATA_HOME/coffer or ~/.local/share/coffer).\n\n\
Quick start:\n  coffer apply -f workload.yaml\n  coffer backup shop-db\n  coffer get restorepoints\n  \
coffer restore shop-db --from <restorepoint>"
)]
pub struct Cli {
    /// State directory (catalog, default location, compile cache).
    #[arg(long, global = true, env = "COFFER_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `coffer=debug` (also COFFER_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum MoverCommand {
    /// Read a job from stdin, run it, upload its output to the URLs the daemon signs.
    Run,
    /// Copy this binary to DEST (the mover pod's init container).
    Install { dest: PathBuf },
    /// Wait for SIGTERM (the mover container's main process).
    Idle,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update Blueprints, Profiles and Workloads from YAML files (`-` reads stdin).
    Apply {
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Check and show what would change, storing nothing; for a Policy, which restore
        /// points its new retention keeps and deletes (against the one stored now).
        #[arg(long)]
        dry_run: bool,
    },
    /// List resources of a kind, or show one.
    Get {
        /// blueprints, profiles, workloads, actionsets, restorepoints, bindings, policies,
        /// compliance (singular and short forms work); on a cluster: actionsets,
        /// restorepoints, bindings, policies, compliance
        kind: String,
        name: Option<String>,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// On a cluster: the namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// On a cluster: every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show one resource in detail (for an ActionSet: its audit trail and logs).
    Describe {
        kind: String,
        name: String,
        /// On a cluster: the namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Back up a workload; on success a RestorePoint records the artifacts. On a cluster
    /// (--kubeconfig/--context) the workload is `kind/name`, e.g. `statefulset/pg -n db`.
    Backup {
        workload: String,
        #[command(flatten)]
        on_cluster: ClusterRun,
        /// Profile to store the backup in (default: the workload's, else `default`).
        #[arg(long)]
        profile: Option<String>,
        /// A param for the plugin, `key=value`; the value is read as JSON when it parses as JSON.
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Build on the workload's newest RestorePoint in this Profile (local mode; the
        /// plugin must support it, e.g. kafka): only what changed since is stored, and the
        /// RestorePoint records its base. Without an earlier one the backup is full.
        #[arg(long)]
        incremental: bool,
        /// Print the final ActionSet as JSON (or YAML) on stdout.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Restore a workload from a RestorePoint (verified before anything is touched).
    Restore {
        workload: String,
        #[command(flatten)]
        on_cluster: ClusterRun,
        #[arg(
            long = "from",
            value_name = "RESTOREPOINT",
            required_unless_present = "at",
            conflicts_with = "at"
        )]
        from: Option<String>,
        /// Restore to a point in time: the newest of the workload's RestorePoints taken at
        /// or before it (RFC 3339, e.g. 2026-12-01T08:00:00Z; without an offset, UTC).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Restore a RestorePoint of another workload into this one (local mode): its data
        /// replaces this workload's. Refused without this flag.
        #[arg(long)]
        allow_other_workload: bool,
        /// On a cluster: recreate the application's resources recorded with the
        /// RestorePoint (workload, Services, ConfigMaps, Secrets, ServiceAccount) in this
        /// namespace, keeping any that exist, then restore the data into the workload there.
        /// The namespace must opt in and allow restores from the RestorePoint's namespace
        /// (annotation coffer.dev/restore-from). Default: the RestorePoint's namespace.
        #[arg(long, value_name = "NAMESPACE")]
        to_namespace: Option<String>,
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Delete a RestorePoint: runs its blueprint's delete action, then removes its objects.
    Delete {
        restore_point: String,
        #[command(flatten)]
        on_cluster: ClusterRun,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Re-read every object of a RestorePoint: sizes and sha256, then decrypt and
    /// decompress to the end, writing nothing; then, if its plugin has a `verify` action
    /// (pgbackrest: `pgbackrest verify`), run it. Exit 1 if anything fails.
    Verify {
        restore_point: String,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Check a Profile's permissions and keys.
    Profile {
        #[command(subcommand)]
        command: storage_cmd::ProfileCommand,
    },
    /// Run a Policy's tick now, or see what its retention will keep and delete.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Inspect what is stored in a Profile: ls, cat, rm.
    Location {
        #[command(subcommand)]
        command: storage_cmd::LocationCommand,
    },
    /// Run the scheduler: with a cluster (--kubeconfig, KUBECONFIG, or in a pod) the
    /// Kubernetes controller, reconciling ActionSets while holding the Lease; without one,
    /// the local scheduler of this state dir's Policies.
    Daemon(cluster::DaemonArgs),
    /// Serve the dashboard for this state dir (pages and the JSON API under /api/v1/).
    /// Every request needs the token: from --token-file, else a new one printed once.
    Ui {
        /// Where to listen; loopback by default.
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: std::net::SocketAddr,
        /// A file holding the token (one line); without it a random token is printed.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
    /// Print the CustomResourceDefinitions (`coffer crds | kubectl apply -f -`).
    Crds,
    /// What runs in a mover pod (docs/movers.md); started by the daemon, not by hand.
    #[command(hide = true)]
    Mover {
        #[command(subcommand)]
        command: MoverCommand,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: plugin_cmd::PluginCommand,
    },
}

/// Options of an action on a cluster.
#[derive(clap::Args, Clone, Default)]
struct ClusterRun {
    /// On a cluster: the namespace of the workload (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// On a cluster: run the ActionSet in this process instead of leaving it to the daemon.
    #[arg(long)]
    local_run: bool,
    /// On a cluster: stop the action when it runs longer than this (e.g. 30m).
    #[arg(long)]
    deadline: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level.as_deref(), cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            progress::clear();
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// An error chain as one line: outermost context first.
pub fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        // Contexts often repeat their cause; keep each piece once.
        if !out.iter().any(|o| o.contains(&p)) {
            out.push(p);
        }
    }
    out.join(": ")
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Plugin { command } = &cli.command {
        return plugin_cmd::run(command, cli.home.clone()).await;
    }
    if let Command::Crds = &cli.command {
        out_raw!("{}", crate::k8s::crd::yaml());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Mover { command } = &cli.command {
        match command {
            MoverCommand::Run => crate::cap::exec::mover::run().await?,
            MoverCommand::Install { dest } => crate::cap::exec::mover::install(dest)?,
            MoverCommand::Idle => crate::cap::exec::mover::idle().await?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if cli.cluster.wanted()
        && let Command::Get {
            kind,
            namespace,
            all_namespaces,
            output,
            ..
        } = &cli.command
    {
        return cluster::get(
            &cli.cluster.target(),
            kind,
            namespace.clone(),
            *all_namespaces,
            *output,
        )
        .await;
    }
    if cli.cluster.wanted()
        && let Command::Describe {
            kind,
            name,
            namespace,
        } = &cli.command
    {
        return cluster::describe(&cli.cluster.target(), kind, name, namespace.clone()).await;
    }
    let coffer = Coffer::open(Home::resolve(cli.home)?).await?;
    if let Command::Daemon(args) = cli.command {
        // No cluster given, none in the environment, not in a pod: the local scheduler.
        let local = !cli.cluster.wanted()
            && std::env::var_os("KUBECONFIG").is_none()
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_none();
        if local {
            let clock = crate::scheduler::clock::from_env();
            let coffer = std::sync::Arc::new(coffer);
            let metrics = match args.metrics_addr {
                Some(addr) => {
                    let listener = crate::metrics::bind(addr).await?;
                    let m = std::sync::Arc::new(crate::metrics::Metrics::default());
                    tokio::spawn(crate::metrics::serve(listener, m.clone()));
                    eprintln!("metrics: http://{addr}/metrics");
                    Some(m)
                }
                None => None,
            };
            match args.ui {
                Some(addr) => {
                    let token = crate::ui::auth::Token::load(args.ui_token_file.as_deref())?;
                    eprintln!("dashboard: http://{addr}/");
                    tokio::try_join!(
                        crate::scheduler::local::run(coffer.clone(), clock, metrics),
                        crate::ui::serve(coffer, addr, token),
                    )?;
                }
                None => crate::scheduler::local::run(coffer, clock, metrics).await?,
            }
        } else if let Some(addr) = args.ui {
            if args.ui_token_file.is_some() {
                anyhow::bail!(
                    "--ui-token-file is for local mode; on Kubernetes people sign in to the dashboard with their own Kubernetes token (docs/dashboard.md)"
                );
            }
            let target = cli.cluster.target();
            let (client, _) = target.connect().await?;
            let ns = args
                .namespace
                .clone()
                .unwrap_or_else(crate::k8s::config_namespace);
            eprintln!("dashboard: http://{addr}/ (sign in with a Kubernetes token)");
            // Every instance serves it, the Lease holder or not: it reads and writes only
            // through the API server.
            tokio::try_join!(
                crate::k8s::daemon::run(coffer, &target, args.config()),
                crate::ui::cluster::serve(client, ns, addr),
            )?;
        } else {
            crate::k8s::daemon::run(coffer, &cli.cluster.target(), args.config()).await?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Ui { addr, token_file } = &cli.command {
        let token = crate::ui::auth::Token::load(token_file.as_deref())?;
        eprintln!("dashboard: http://{addr}/");
        crate::ui::serve(std::sync::Arc::new(coffer), *addr, token).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if cli.cluster.wanted() {
        return on_cluster(coffer, &cli.cluster.target(), cli.command).await;
    }
    match cli.command {
        Command::Apply { files, dry_run } => apply(&coffer, &files, dry_run),
        Command::Get { kind, output, .. } if kind == "compliance" => {
            policy_cmd::compliance(&coffer, output)
        }
        Command::Get {
            kind, name, output, ..
        } => output::get(&coffer, parse_kind(&kind)?, name.as_deref(), output),
        Command::Describe { kind, name, .. } => {
            output::describe(&coffer, parse_kind(&kind)?, &name)
        }
        Command::Backup {
            workload,
            profile,
            params,
            incremental,
            output,
            ..
        } => {
            let mut req =
                actions::request(ActionKind::Backup, Some(workload), profile, None, &params)?;
            req.incremental = incremental;
            actions::run(&coffer, req, output).await
        }
        Command::Restore {
            workload,
            from,
            at,
            allow_other_workload,
            to_namespace,
            params,
            output,
            ..
        } => {
            let from = match (from, at) {
                (Some(f), _) => f,
                (None, Some(at)) => policy_cmd::restore_point_at(&coffer, &workload, &at)?,
                (None, None) => anyhow::bail!("give --from RESTOREPOINT or --at TIME"),
            };
            if to_namespace.is_some() {
                anyhow::bail!(
                    "--to-namespace is for a cluster (--kubeconfig/--context); in local mode restore into another Workload with --allow-other-workload"
                );
            }
            let mut req = actions::request(
                ActionKind::Restore,
                Some(workload),
                None,
                Some(from),
                &params,
            )?;
            req.allow_other_workload = allow_other_workload;
            actions::run(&coffer, req, output).await
        }
        Command::Delete {
            restore_point,
            output,
            ..
        } => {
            let req = actions::request(ActionKind::Delete, None, None, Some(restore_point), &[])?;
            actions::run(&coffer, req, output).await
        }
        Command::Verify {
            restore_point,
            output,
        } => storage_cmd::verify(&coffer, &restore_point, output).await,
        Command::Profile { command } => storage_cmd::profile(&coffer, command).await,
        Command::Policy { command } => policy_cmd::command(&coffer, command).await,
        Command::Location { command } => storage_cmd::location(&coffer, command).await,
        Command::Plugin { .. }
        | Command::Daemon(_)
        | Command::Ui { .. }
        | Command::Crds
        | Command::Mover { .. } => {
            unreachable!("handled above")
        }
    }
}

/// backup / restore / delete against a cluster.
async fn on_cluster(
    coffer: Coffer,
    cluster: &crate::k8s::ClusterTarget,
    command: Command,
) -> Result<ExitCode> {
    use cluster::{Request, action};
    let mut target_namespace = None;
    let (req, on, output) = match command {
        Command::Backup {
            workload,
            on_cluster,
            profile,
            params,
            incremental,
            output,
        } => {
            if incremental {
                anyhow::bail!(
                    "--incremental is for local mode for now: on a cluster every backup is full; leave it out"
                );
            }
            let r = actions::request(ActionKind::Backup, Some(workload), profile, None, &params)?;
            (r, on_cluster, output)
        }
        Command::Restore {
            workload,
            on_cluster,
            from,
            at,
            allow_other_workload,
            to_namespace,
            params,
            output,
        } => {
            target_namespace = to_namespace;
            let from = match (from, at) {
                (Some(f), _) => f,
                (None, Some(at)) => {
                    cluster::restore_point_at(cluster, &workload, on_cluster.namespace.clone(), &at)
                        .await?
                }
                (None, None) => anyhow::bail!("give --from RESTOREPOINT or --at TIME"),
            };
            if allow_other_workload {
                anyhow::bail!(
                    "--allow-other-workload is for local mode; on a cluster a RestorePoint is restored into its own workload only"
                );
            }
            let r = actions::request(
                ActionKind::Restore,
                Some(workload),
                None,
                Some(from),
                &params,
            )?;
            (r, on_cluster, output)
        }
        Command::Delete {
            restore_point,
            on_cluster,
            output,
        } => {
            let r = actions::request(ActionKind::Delete, None, None, Some(restore_point), &[])?;
            (r, on_cluster, output)
        }
        _ => anyhow::bail!(
            "on a cluster (--kubeconfig/--context), coffer runs backup, restore, delete, get, describe and daemon; apply Blueprints and Profiles with kubectl"
        ),
    };
    action(
        coffer,
        cluster,
        Request {
            action: req.action,
            workload: req.workload,
            restore_point: req.restore_point,
            profile: req.profile,
            params: req.params,
            namespace: on.namespace,
            local_run: on.local_run,
            deadline: on.deadline,
            target_namespace,
            output,
        },
    )
    .await
}

fn parse_kind(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| {
        anyhow!("unknown kind {s:?}: use one of blueprints, profiles, workloads, actionsets, restorepoints, bindings, policies, compliance")
    })
}

fn apply(coffer: &Coffer, files: &[PathBuf], dry_run: bool) -> Result<ExitCode> {
    for f in files {
        let (name, text) = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading stdin")?;
            ("<stdin>".to_string(), s)
        } else {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            (f.display().to_string(), text)
        };
        if dry_run {
            for (kind, name, verdict, value) in coffer.plan_apply(&name, &text)? {
                out!(
                    "{} {name} {verdict} (dry run)",
                    kind.as_str().to_lowercase()
                );
                if kind == crate::model::Kind::Policy && verdict != "unchanged" {
                    policy_cmd::preview(coffer, serde_json::from_value(value)?)?;
                }
            }
            continue;
        }
        for (kind, name, verdict) in coffer.apply(&name, &text)? {
            out!("{} {name} {verdict}", kind.as_str().to_lowercase());
        }
    }
    Ok(ExitCode::SUCCESS)
}
