//! The CLI verbs against a cluster: `backup` / `restore` / `delete` create an ActionSet
//! resource and follow it until the daemon finishes it (or run it in-process with
//! `--local-run`); `get` lists coffer's resources and which Blueprint protects each workload.

use crate::action::Coffer;
use crate::binding::Resolution;
use crate::k8s::daemon::DaemonConfig;
use crate::k8s::kinds::{
    self, ActionSetResource, RestorePointResource, StatusPatch, patch_status, status,
};
use crate::k8s::run::{self, ClusterCtx};
use crate::k8s::{ClusterTarget, parse_subject};
use crate::model::{ActionKind, ActionSetSpec, Phase};
use anyhow::{Context, Result, anyhow, bail};
use kube::api::{Api, ListParams, PostParams};
use kube::core::ObjectMeta;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

/// Which cluster: `--kubeconfig` / `--context`, else the usual (KUBECONFIG, ~/.kube/config,
/// in-cluster service account).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Talk to this cluster (a kubeconfig file) instead of local mode.
    #[arg(long, global = true, value_name = "FILE", env = "COFFER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (implies cluster mode).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// Whether a cluster was asked for (else local mode).
    pub fn wanted(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }

    pub fn target(&self) -> ClusterTarget {
        ClusterTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Namespace of the Blueprints, Profiles, BlueprintBindings and the Lease (default:
    /// POD_NAMESPACE, else COFFER_NAMESPACE, else `coffer`).
    #[arg(long = "namespace", short = 'n', env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This instance's name in the Lease and in `status.runner` (default: POD_NAME, else
    /// host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, default_value = "coffer-daemon")]
    pub lease_name: String,
    /// How long the Lease lasts without renewal (renewed every third of it).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` here (on a cluster by default
    /// on 0.0.0.0:9464; the local scheduler serves them only when given).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Actions run at the same time; more wait, Running, for a slot.
    #[arg(long, default_value_t = 16)]
    pub max_concurrent: usize,
    /// A Running ActionSet of another runner whose heartbeat this instance has seen
    /// unchanged this long is settled as lost (runners beat every 2 s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub runner_timeout: Duration,
    /// Run large exec streams in a mover pod beside the workload, which uploads straight
    /// to the location (s3 Profiles; Blueprints with `spec.mover`): the image holding
    /// this binary as /coffer, usually the daemon's own. Unset: no movers.
    #[arg(long, env = "COFFER_MOVER_IMAGE")]
    pub mover_image: Option<String>,
    /// Output at least this large in the workload's last restore point goes through a
    /// mover (`0`: all output, even a first backup's).
    #[arg(long, default_value = "1Gi", value_parser = crate::model::parse_size)]
    pub mover_threshold: u64,
    /// Where the mover container runs coffer from (the mover pod's init container puts it
    /// there; change it only for a node whose exec is simulated).
    #[arg(long, default_value = "/coffer-bin/coffer")]
    pub mover_binary: String,
    /// Serve the dashboard here too (local mode; docs/dashboard.md), e.g. 127.0.0.1:7878.
    /// Default: off.
    #[arg(long)]
    pub ui: Option<SocketAddr>,
    /// The dashboard's token (a file holding it); without it a random one is printed.
    #[arg(long, requires = "ui")]
    pub ui_token_file: Option<std::path::PathBuf>,
}

impl DaemonArgs {
    pub fn config(self) -> DaemonConfig {
        DaemonConfig {
            namespace: self.namespace,
            identity: self.identity,
            lease_name: self.lease_name,
            lease_duration: self.lease_duration,
            metrics_addr: self
                .metrics_addr
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9464))),
            max_concurrent: self.max_concurrent,
            runner_timeout: self.runner_timeout,
            movers: self.mover_image.map(|image| crate::k8s::run::MoverConfig {
                image,
                binary: self.mover_binary,
                threshold: self.mover_threshold,
            }),
        }
    }
}

macro_rules! out {
    ($($t:tt)*) => { super::emit(&format!("{}\n", format_args!($($t)*))) };
}

/// What to run.
pub struct Request {
    pub action: ActionKind,
    /// `kind/name`; for delete, taken from the restore point when absent.
    pub workload: Option<String>,
    pub restore_point: Option<String>,
    pub profile: Option<String>,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub namespace: Option<String>,
    pub local_run: bool,
    pub deadline: Option<String>,
    /// A restore into another namespace (the application's resources recreated there).
    pub target_namespace: Option<String>,
    /// Print the final ActionSet resource instead of a summary line.
    pub output: Option<super::OutputFormat>,
}

pub async fn action(coffer: Coffer, cluster: &ClusterTarget, req: Request) -> Result<ExitCode> {
    let (client, default_ns, config) = cluster.connect_with_config().await?;
    let ns = req.namespace.clone().unwrap_or(default_ns);
    let workload = match (&req.workload, &req.restore_point) {
        (Some(w), _) => w.clone(),
        (None, Some(rp)) => {
            Api::<RestorePointResource>::namespaced(client.clone(), &ns)
                .get_opt(rp)
                .await
                .map_err(|e| refusal(e, &format!("reading RestorePoint {ns}/{rp}"), &ns, OPERATOR))?
                .ok_or_else(|| anyhow!("RestorePoint {ns}/{rp} not found (`coffer get restorepoints -n {ns}` lists them)"))?
                .spec
                .workload
        }
        (None, None) => bail!("{} needs a workload", req.action),
    };
    let (_, wname) = parse_subject(&workload)?;
    let spec = ActionSetSpec {
        action: req.action.name().to_string(),
        workload: workload.clone(),
        blueprint: String::new(),
        profile: req.profile.clone().unwrap_or_default(),
        restore_point: req.restore_point.clone(),
        params: if req.params.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(req.params.clone())
        },
        cancel: false,
        deadline: req.deadline.clone(),
        target_namespace: req.target_namespace.clone(),
    };
    let sets: Api<ActionSetResource> = Api::namespaced(client.clone(), &ns);
    // A --local-run ActionSet says so: the daemon leaves it to this process.
    let mut obj = ActionSetResource {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{wname}-", req.action)),
            ..Default::default()
        },
        spec,
        status: None,
    };
    if req.local_run {
        obj.metadata.annotations = Some(
            [(
                crate::k8s::daemon::LOCAL_RUN_ANNOTATION.to_string(),
                format!("cli-{}", std::process::id()),
            )]
            .into_iter()
            .collect(),
        );
    }
    let created = sets
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| {
            refusal(
                e,
                &format!("creating an ActionSet in namespace {ns}"),
                &ns,
                OPERATOR,
            )
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let what = format!("{} {workload}", req.action);
    tracing::info!(actionset = %name, namespace = %ns, "ActionSet created");
    if req.local_run {
        // This process is the runner, exactly as the daemon would be.
        coffer.set_manifest_key(
            crate::k8s::keys::manifest_key(&client, &crate::k8s::config_namespace()).await?,
        );
        let cx = ClusterCtx {
            client: client.clone(),
            config,
            config_ns: crate::k8s::config_namespace(),
            identity: format!("cli-{}", std::process::id()),
            movers: None,
        };
        let mut seen = created.clone();
        let claimed = loop {
            match run::claim(&sets, &seen, &cx.identity).await {
                Ok(c) => break c,
                Err(e) if run::lost_claim(&e) => {
                    // It changed since it was read: the daemon adds its finalizer to every
                    // new ActionSet. Claim it again unless another runner has.
                    seen = sets
                        .get(&name)
                        .await
                        .with_context(|| format!("reading ActionSet {ns}/{name}"))?;
                    let now = status(&seen);
                    if now.phase != Phase::Pending || now.runner.is_some() {
                        eprintln!(
                            "ActionSet {ns}/{name} was claimed by another runner; following it"
                        );
                        return follow(&sets, &name, &what, req.output).await;
                    }
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("claiming ActionSet {name}")));
                }
            }
        };
        let outcome = async {
            let (tx, rx) = watch::channel(None);
            let p = crate::k8s::resolve::prepare(&coffer, &cx, &claimed, Some(tx.clone())).await?;
            let interrupt = async {
                let _ = tokio::signal::ctrl_c().await;
                let _ = tx.send(Some("cancelled by the user (interrupt)".into()));
                std::future::pending::<()>().await;
            };
            let work = run::execute(&coffer, &p, rx, None);
            tokio::select! {
                r = work => r,
                _ = interrupt => unreachable!("never completes"),
            }
        }
        .await;
        if let Err(e) = outcome {
            let why = format!("{e:#}");
            patch_status(&sets, &name, &StatusPatch::failed(why), None)
                .await
                .with_context(|| format!("recording the failure of ActionSet {name}"))?;
        }
    }
    follow(&sets, &name, &what, req.output).await
}

/// The ClusterRoles deploy/rbac.yaml ships for people: acting (ActionSets) and reading.
const OPERATOR: &str = "coffer-operator";
const VIEWER: &str = "coffer-viewer";

/// A failed call on the user's behalf; when the API server refused it, what to ask for.
fn refusal(e: kube::Error, what: &str, ns: &str, role: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 403 => anyhow!(
            "{what}: the cluster refused: {}\n\
             Ask a cluster administrator to bind you to ClusterRole {role} (deploy/rbac.yaml) in \
             namespace {ns}: kubectl create rolebinding {role}-<you> --clusterrole={role} --user=<you> -n {ns}",
            s.message
        ),
        e => anyhow::Error::new(e).context(what.to_string()),
    }
}

/// Poll the ActionSet until it ends, showing its phase and bytes.
async fn follow(
    sets: &Api<ActionSetResource>,
    name: &str,
    what: &str,
    output: Option<super::OutputFormat>,
) -> Result<ExitCode> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let o = sets
            .get(name)
            .await
            .with_context(|| format!("reading ActionSet {name}"))?;
        let s = status(&o);
        if let (Some(format), Phase::Completed | Phase::Failed) = (output, s.phase) {
            bar.finish_and_clear();
            super::output::print_one(&o, format)?;
            return Ok(if s.phase == Phase::Completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        match s.phase {
            Phase::Completed => {
                bar.finish_and_clear();
                let bytes = indicatif::HumanBytes(s.bytes);
                match &s.restore_point {
                    Some(rp) => {
                        out!("{what}: completed, {bytes}; RestorePoint {rp} (ActionSet {name})")
                    }
                    None => out!("{what}: completed, {bytes} (ActionSet {name})"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            Phase::Failed => {
                bar.finish_and_clear();
                eprintln!(
                    "error: {what} failed: {} (ActionSet {name})",
                    s.error.unwrap_or_else(|| "unknown error".into())
                );
                return Ok(ExitCode::FAILURE);
            }
            Phase::Pending => bar.set_message(format!(
                "{what}: waiting for the coffer daemon (ActionSet {name})"
            )),
            Phase::Running => bar.set_message(format!(
                "{what}: running on {}, {} (ActionSet {name})",
                s.runner.as_deref().unwrap_or("?"),
                indicatif::HumanBytes(s.bytes)
            )),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `coffer get actionsets|restorepoints|bindings` on a cluster.
pub async fn get(
    cluster: &ClusterTarget,
    kind: &str,
    namespace: Option<String>,
    all_namespaces: bool,
    output: super::OutputFormat,
) -> Result<ExitCode> {
    let (client, default_ns) = cluster.connect().await?;
    let ns = namespace.unwrap_or(default_ns);
    match kind.to_ascii_lowercase().as_str() {
        "compliance" => return compliance(&client, output).await,
        "policy" | "policies" | "pol" => {
            let all = policies(&client).await?;
            if output == super::OutputFormat::Table {
                super::output::policy_table(&all, crate::scheduler::clock::from_env().now());
            } else {
                super::output::print_one(&all, output)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    fn list_api<K>(client: &kube::Client, ns: &str, all: bool) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        if all {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), ns)
        }
    }
    match kind.to_ascii_lowercase().trim_end_matches('s') {
        "actionset" | "a" => {
            let items = list_api::<ActionSetResource>(&client, &ns, all_namespaces)
                .list(&ListParams::default())
                .await
                .map_err(|e| refusal(e, "listing ActionSets", &ns, VIEWER))?;
            out!(
                "{:<14} {:<40} {:<8} {:<22} {:<10} RESTOREPOINT",
                "NAMESPACE",
                "NAME",
                "ACTION",
                "WORKLOAD",
                "PHASE"
            );
            for o in items.items {
                let s = status(&o);
                out!(
                    "{:<14} {:<40} {:<8} {:<22} {:<10} {}",
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default(),
                    o.spec.action,
                    o.spec.workload,
                    s.phase.as_str(),
                    s.restore_point.unwrap_or_default()
                );
            }
        }
        "restorepoint" | "rp" => {
            let items = list_api::<RestorePointResource>(&client, &ns, all_namespaces)
                .list(&ListParams::default())
                .await
                .map_err(|e| refusal(e, "listing RestorePoints", &ns, VIEWER))?;
            out!(
                "{:<14} {:<44} {:<22} {:<10} {:<9} SIZE",
                "NAMESPACE",
                "NAME",
                "WORKLOAD",
                "PROFILE",
                "QUIESCED"
            );
            for o in items.items {
                out!(
                    "{:<14} {:<44} {:<22} {:<10} {:<9} {}",
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default(),
                    o.spec.workload,
                    o.spec.profile,
                    super::consistency::window(o.spec.quiesce.as_ref()),
                    indicatif::HumanBytes(o.spec.size)
                );
            }
        }
        "binding" | "blueprintbinding" | "bb" => bindings(&client, &ns, all_namespaces).await?,
        other => bail!(
            "on a cluster, `coffer get` lists actionsets, restorepoints, bindings, policies or compliance, not {other:?}"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `coffer describe actionset|restorepoint NAME` on a cluster.
pub async fn describe(
    cluster: &ClusterTarget,
    kind: &str,
    name: &str,
    namespace: Option<String>,
) -> Result<ExitCode> {
    let (client, default_ns) = cluster.connect().await?;
    let ns = namespace.unwrap_or(default_ns);
    match kind.to_ascii_lowercase().trim_end_matches('s') {
        "actionset" | "a" => {
            let o = Api::<ActionSetResource>::namespaced(client, &ns)
                .get_opt(name)
                .await
                .map_err(|e| refusal(e, &format!("reading ActionSet {ns}/{name}"), &ns, VIEWER))?
                .ok_or_else(|| anyhow!("ActionSet {ns}/{name} not found"))?;
            super::output::describe_action_set(&kinds::action_set(&o));
        }
        "restorepoint" | "rp" => {
            let o = Api::<RestorePointResource>::namespaced(client, &ns)
                .get_opt(name)
                .await
                .map_err(|e| refusal(e, &format!("reading RestorePoint {ns}/{name}"), &ns, VIEWER))?
                .ok_or_else(|| anyhow!("RestorePoint {ns}/{name} not found"))?;
            out!(
                "{}",
                serde_yaml_ng::to_string(&o).unwrap_or_default().trim_end()
            );
        }
        "policy" | "policie" | "pol" => {
            let p = policies(&client)
                .await?
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    anyhow!(
                        "Policy {}/{name} not found (`coffer get policies` lists them)",
                        crate::k8s::config_namespace()
                    )
                })?;
            super::policy_cmd::describe_status(&p);
            out!("Workloads (as the daemon last judged them):");
            for c in &p.status.compliance {
                out!(
                    "  {}  {}{}  newest: {}",
                    c.workload,
                    c.state,
                    c.reason
                        .as_ref()
                        .map(|r| format!("/{r}"))
                        .unwrap_or_default(),
                    c.newest_restore_point.as_deref().unwrap_or("-")
                );
            }
        }
        other => bail!(
            "on a cluster, `coffer describe` shows actionsets, restorepoints or policies, not {other:?} (kubectl shows the rest)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every StatefulSet and Deployment with the Blueprint that protects it, and how.
async fn bindings(client: &kube::Client, ns: &str, all: bool) -> Result<()> {
    let config_ns = crate::k8s::config_namespace();
    out!(
        "{:<14} {:<28} {:<20} VIA",
        "NAMESPACE",
        "WORKLOAD",
        "BLUEPRINT"
    );
    let only = (!all).then_some(ns);
    for w in crate::k8s::policies::select::workloads_in(client, &config_ns, only).await? {
        let via = match &w.resolution {
            Resolution::Binding { binding, also, .. } if also.is_empty() => {
                format!("BlueprintBinding {binding}")
            }
            Resolution::Binding { binding, also, .. } => format!(
                "BlueprintBinding {binding} (also matched, created later: {})",
                also.join(", ")
            ),
            Resolution::Annotation { .. } => "annotation coffer.dev/blueprint".into(),
            Resolution::Unprotected => "-".into(),
        };
        out!(
            "{:<14} {:<28} {:<20} {via}",
            w.info.namespace,
            w.subject(),
            w.resolution.blueprint().unwrap_or("(unprotected)")
        );
    }
    Ok(())
}

/// The Policies of coffer's namespace (COFFER_NAMESPACE, default `coffer`).
async fn policies(client: &kube::Client) -> Result<Vec<crate::model::Policy>> {
    let ns = crate::k8s::config_namespace();
    Ok(
        Api::<crate::model::PolicyResource>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                refusal(
                    e,
                    &format!("listing Policies in namespace {ns}"),
                    &ns,
                    VIEWER,
                )
            })?
            .items
            .iter()
            .map(kinds::policy)
            .collect(),
    )
}

/// `coffer get compliance` on a cluster: what the daemon judged last (each Policy's
/// status; judging needs the manifest key, which only coffer reads), and every protected
/// workload no Policy selects as `Unmanaged`.
async fn compliance(client: &kube::Client, output: super::OutputFormat) -> Result<ExitCode> {
    let all = policies(client).await?;
    let mut rows: Vec<crate::model::Compliance> = all
        .iter()
        .flat_map(|p| p.status.compliance.iter().cloned())
        .collect();
    let workloads =
        crate::k8s::policies::select::workloads(client, &crate::k8s::config_namespace()).await?;
    rows.extend(crate::k8s::policies::select::unmanaged(&workloads, &all));
    super::policy_cmd::print_compliance(&rows, output)
}

/// `coffer restore kind/name --at TIME` on a cluster: the newest of the workload's
/// RestorePoints in its namespace taken at or before TIME.
pub async fn restore_point_at(
    cluster: &ClusterTarget,
    workload: &str,
    namespace: Option<String>,
    at: &str,
) -> Result<String> {
    let (client, default_ns) = cluster.connect().await?;
    let ns = namespace.unwrap_or(default_ns);
    let (kind, name) = parse_subject(workload)?;
    let subject = format!("{}/{name}", kind.kind.to_ascii_lowercase());
    let rps = Api::<RestorePointResource>::namespaced(client, &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            refusal(
                e,
                &format!("listing RestorePoints in namespace {ns}"),
                &ns,
                VIEWER,
            )
        })?
        .items;
    let chosen = crate::action::at::newest_at(
        rps.iter()
            .filter(|rp| rp.spec.workload == subject)
            .map(|rp| {
                (
                    rp.metadata.name.as_deref().unwrap_or_default(),
                    rp.spec.start_time.as_str(),
                )
            }),
        at,
        &format!("{} {ns}/{name}", kind.kind),
        &format!("coffer get restorepoints -n {ns}"),
    )?;
    Ok(super::policy_cmd::said(chosen))
}
