//! Running one ActionSet resource against a cluster, for the daemon and for
//! `coffer backup --local-run`: resolve its subject, Blueprint (binding or annotation),
//! Profile and secrets; run it on the same machinery as local mode (with pod exec and the
//! cluster's kube backend); mirror its progress into the resource's status; record a
//! backup's RestorePoint resource before the ActionSet says Completed.
//!
//! The ActionSet's status is the durable state machine: Pending (or no status) -> Running
//! (with `runner`) -> Completed | Failed; a Running one whose runner is gone is settled by
//! the next leader (`settle.rs`).

use super::sync::{gvk_api, read_secret, resolve_blueprint, sync};
use super::{PROFILE_ANNOTATION, SECRET_ANNOTATION_PREFIX, api, parse_subject, spec_of};
use crate::action::{ActionRequest, ClusterSubject, Coffer, PreparedAction, cleanup};
use crate::binding::{Resolution, WorkloadInfo};
use crate::cap::Backends;
use crate::cap::exec::{ExecBackend, PodExec, PodTarget};
use crate::cap::kube::KubeBackend;
use crate::cap::kube::client::ClusterKube;
use crate::cap::snapshot::SnapshotBackend;
use crate::cap::snapshot::csi::CsiSnapshots;
use crate::model::{
    ActionKind, ActionSet, ActionSetSpec, ActionSetStatus, Kind, Phase, RestorePoint, Workload,
    WorkloadSpec,
};
use crate::storage::Location;
use crate::wit::coffer::blueprint::types::ObjectRef;
use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a running action's progress is copied into its status.
const MIRROR_EVERY: Duration = Duration::from_secs(2);

pub struct ClusterCtx {
    pub client: Client,
    /// The configuration `client` came from: plugins' kube calls get a client of their own
    /// from it that impersonates a ServiceAccount.
    pub config: kube::Config,
    /// Where Blueprints, Profiles and BlueprintBindings live (the daemon's namespace).
    pub config_ns: String,
    /// This instance, recorded as `status.runner`.
    pub identity: String,
}

/// Write `status` fields (a JSON merge patch of the status subresource).
pub async fn patch_status(
    api: &Api<DynamicObject>,
    name: &str,
    status: serde_json::Value,
) -> Result<()> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("updating the status of ActionSet {name}"))?;
    Ok(())
}

/// Claim an ActionSet for `runner`: Running, compare-and-set on the resourceVersion of `o`
/// (a 409 means someone else claimed it first: see [`lost_claim`]).
pub async fn claim(api: &Api<DynamicObject>, o: &DynamicObject, runner: &str) -> Result<()> {
    let name = o.metadata.name.clone().unwrap_or_default();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"resourceVersion": o.metadata.resource_version},
            "status": {"phase": "Running", "startTime": crate::model::now_rfc3339(),
                       "runner": runner, "heartbeat": crate::model::now_rfc3339()},
        })),
    )
    .await
    .map_err(|e| anyhow::Error::new(e).context(format!("claiming ActionSet {name}")))?;
    Ok(())
}

/// The claim lost the race (the object changed since it was read).
pub fn lost_claim(e: &anyhow::Error) -> bool {
    e.chain().any(
        |c| matches!(c.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 409),
    )
}

/// Add or remove coffer's finalizer.
pub async fn set_finalizer(
    api: &Api<DynamicObject>,
    o: &DynamicObject,
    present: bool,
) -> Result<()> {
    let mut f = o.metadata.finalizers.clone().unwrap_or_default();
    let has = f.iter().any(|x| x == super::FINALIZER);
    if has == present {
        return Ok(());
    }
    if present {
        f.push(super::FINALIZER.into());
    } else {
        f.retain(|x| x != super::FINALIZER);
    }
    let name = o.metadata.name.clone().unwrap_or_default();
    match api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": f}})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("updating the finalizers of ActionSet {name}")),
    }
}

/// Resolve everything an ActionSet resource needs and record it (locally) as Running.
pub async fn prepare(
    coffer: &Coffer,
    cx: &ClusterCtx,
    set: &DynamicObject,
) -> Result<PreparedAction> {
    let ns = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec: ActionSetSpec = spec_of(set)?;
    let input = match &spec.restore_point {
        Some(rp) => {
            if !sync(coffer, &cx.client, &ns, Kind::RestorePoint, rp).await? {
                bail!("RestorePoint {ns}/{rp} not found");
            }
            Some(coffer.restore_point(rp)?)
        }
        None => None,
    };
    let (sk, wname) = parse_subject(&spec.workload)?;
    let subject = gvk_api(&cx.client, &ns, sk.api_version, sk.kind)
        .get_opt(&wname)
        .await
        .with_context(|| format!("reading {} {ns}/{wname}", sk.kind))?;
    if subject.is_none() && spec.kind() != ActionKind::Delete {
        bail!("{} {ns}/{wname} not found", sk.kind);
    }
    let meta = subject
        .as_ref()
        .map(|s| s.metadata.clone())
        .unwrap_or_default();
    let info = WorkloadInfo {
        kind: sk.kind.into(),
        namespace: ns.clone(),
        name: wname.clone(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
    };
    let blueprint = if !spec.blueprint.is_empty() {
        spec.blueprint.clone()
    } else {
        match resolve_blueprint(&cx.client, &cx.config_ns, &info).await? {
            Resolution::Unprotected => match &input {
                Some(rp) => rp.spec.blueprint.clone(),
                None => bail!(
                    "{} {ns}/{wname} is not protected by a Blueprint: annotate it with coffer.dev/blueprint=<name>, or create a BlueprintBinding in namespace {} that matches it",
                    sk.kind,
                    cx.config_ns
                ),
            },
            r => r.blueprint().unwrap_or_default().to_string(),
        }
    };
    sync(
        coffer,
        &cx.client,
        &cx.config_ns,
        Kind::Blueprint,
        &blueprint,
    )
    .await?;
    let profile = match &input {
        Some(rp) => rp.spec.profile.clone(),
        None if !spec.profile.is_empty() => spec.profile.clone(),
        None => info
            .annotations
            .get(PROFILE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "default".into()),
    };
    if !sync(coffer, &cx.client, &cx.config_ns, Kind::Profile, &profile).await? {
        bail!(
            "Profile {profile} not found in namespace {}: create it there (see deploy/examples/profile.yaml), or name another with spec.profile or the {PROFILE_ANNOTATION} annotation",
            cx.config_ns
        );
    }
    let mut secrets = BTreeMap::new();
    for (k, v) in &info.annotations {
        if let Some(logical) = k.strip_prefix(SECRET_ANNOTATION_PREFIX) {
            let (secret, key) = v
                .split_once('/')
                .ok_or_else(|| anyhow!("annotation {k}: write it as <secret>/<key>, not {v:?}"))?;
            let purpose = format!("the plugin's secret {logical:?}");
            let value = read_secret(&cx.client, &ns, &purpose, secret, key).await?;
            secrets.insert(logical.to_string(), value);
        }
    }
    // The identity the plugin's kube calls act as.
    let service_account = coffer
        .blueprint(&blueprint)
        .ok()
        .and_then(|(b, _)| b.spec.service_account.clone())
        .unwrap_or_else(|| super::PLUGIN_SERVICE_ACCOUNT.to_string());
    let kind_l = sk.kind.to_ascii_lowercase();
    let safe = format!("{kind_l}-{wname}");
    let workload = Workload::new(
        Kind::Workload,
        safe.clone(),
        WorkloadSpec {
            blueprint: blueprint.clone(),
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            profile: Some(profile.clone()),
            params: BTreeMap::new(),
            volumes: BTreeMap::new(),
        },
    );
    let params = match &spec.params {
        serde_json::Value::Null => serde_json::Map::new(),
        serde_json::Value::Object(m) => m.clone(),
        other => bail!("spec.params must be an object, found {other}"),
    };
    // The cluster resource is the record; a local one left by an earlier attempt goes.
    coffer.catalog.delete(Kind::ActionSet, &name)?;
    let cluster = ClusterSubject {
        action_set: name.clone(),
        workload,
        label: format!("{kind_l}/{wname}"),
        subject: ObjectRef {
            api_version: sk.api_version.into(),
            kind: sk.kind.into(),
            namespace: Some(ns.clone()),
            name: wname.clone(),
        },
        prefix_root: format!("restorepoints/{ns}/{safe}"),
        secrets,
        backends: Backends::default()
            .with::<Arc<dyn ExecBackend>>(Arc::new(PodExec::new(
                cx.client.clone(),
                PodTarget {
                    api_version: sk.api_version.into(),
                    kind: sk.kind.into(),
                    namespace: ns.clone(),
                    name: wname.clone(),
                    container: info.annotations.get("coffer.dev/container").cloned(),
                },
                name.clone(),
            )))
            .with::<Arc<dyn SnapshotBackend>>(Arc::new(CsiSnapshots {
                client: cx.client.clone(),
                namespace: ns.clone(),
            }))
            .with::<Arc<dyn KubeBackend>>(Arc::new(ClusterKube {
                client: super::plugin_client(&cx.config, &ns, &service_account)?,
                default_namespace: ns,
            })),
    };
    coffer
        .prepare(ActionRequest {
            action: ActionKind::parse(&spec.action),
            workload: Some(cluster.label.clone()),
            profile: Some(profile),
            restore_point: spec.restore_point.clone(),
            params,
            cluster: Some(Arc::new(cluster)),
            ..Default::default()
        })
        .await
}

/// How a cluster status looks for a local record.
fn status_json(s: &ActionSetStatus, runner: &str) -> serde_json::Value {
    let mut s = s.clone();
    s.owner = None;
    s.runner = Some(runner.to_string());
    // The runner's heartbeat: the leader judges a runner by whether this keeps changing.
    s.heartbeat = Some(crate::model::now_rfc3339());
    serde_json::to_value(s).unwrap_or_default()
}

enum Ended {
    Done(Box<Result<ActionSet>>),
    Stop(String),
}

/// Run a prepared action to its end, mirroring progress into the resource; a cancel
/// request (`cancel` receives a reason) or the deadline stops it, and a stopped backup's
/// partial objects are removed. Returns the final record.
pub async fn execute(
    coffer: &Coffer,
    cx: &ClusterCtx,
    sets: &Api<DynamicObject>,
    p: &PreparedAction,
    mut cancel: watch::Receiver<Option<String>>,
    deadline: Option<Duration>,
) -> Result<ActionSet> {
    let mut run = Box::pin(coffer.run(p));
    let mut tick = tokio::time::interval(MIRROR_EVERY);
    tick.tick().await;
    let limit = deadline.unwrap_or(Duration::from_secs(100 * 365 * 86400));
    let timer = tokio::time::sleep(limit);
    tokio::pin!(timer);
    let ended = loop {
        tokio::select! {
            r = &mut run => break Ended::Done(Box::new(r)),
            _ = tick.tick() => {
                if let Ok(Some(local)) = coffer.catalog.get::<ActionSet>(Kind::ActionSet, &p.name) {
                    let _ = patch_status(sets, &p.name, status_json(&local.status, &cx.identity)).await;
                }
            }
            changed = cancel.changed() => {
                let reason = cancel.borrow().clone();
                match (changed, reason) {
                    (_, Some(r)) => break Ended::Stop(r),
                    (Err(_), None) => break Ended::Stop("the coffer daemon is shutting down".into()),
                    _ => {}
                }
            }
            _ = &mut timer => break Ended::Stop(format!(
                "its deadline of {} passed; the action was stopped",
                humantime::format_duration(limit)
            )),
        }
    };
    // Dropping the run kills its processes and aborts its transfers before cleanup.
    drop(run);
    let mut done = match ended {
        Ended::Done(r) => (*r)?,
        Ended::Stop(why) => coffer.abandon(p, &why).await?,
    };
    if done.status.phase == Phase::Completed
        && let Err(e) = record_outcome(coffer, cx, p, &done).await
    {
        // Not recorded on the cluster means not a backup: remove what it wrote.
        let why = format!("{e:#}");
        if p.request.action.removes_objects_on_failure() {
            let location = Location::from_profile(&p.profile, &coffer.credentials);
            let _ = cleanup::remove_partial_backup(location, &p.prefix).await;
        }
        done.status.phase = Phase::Failed;
        done.status.restore_point = None;
        done.status.error = Some(format!(
            "the action finished, but its result could not be recorded on the cluster ({why}); its objects were removed"
        ));
    }

    done.status.blueprint = Some(p.blueprint.name().to_string());
    done.status.profile = Some(p.profile.name().to_string());
    // `runner` stays: who ran it. Only a Running phase makes it matter.
    let mut status = status_json(&done.status, &cx.identity);
    status["owner"] = serde_json::Value::Null;
    let mut last = None;
    for attempt in 0..5u32 {
        match patch_status(sets, &p.name, status.clone()).await {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    if let Some(e) = last {
        return Err(e);
    }
    Ok(done)
}

/// A completed backup's RestorePoint resource (before the ActionSet says Completed); a
/// completed delete removes it.
async fn record_outcome(
    coffer: &Coffer,
    cx: &ClusterCtx,
    p: &PreparedAction,
    done: &ActionSet,
) -> Result<()> {
    let ns = p
        .request
        .cluster
        .as_ref()
        .and_then(|c| c.subject.namespace.clone())
        .unwrap_or_default();
    let rps = api(&cx.client, "RestorePoint", &ns);
    match &p.request.action {
        ActionKind::Backup => {
            let name = done
                .status
                .restore_point
                .clone()
                .ok_or_else(|| anyhow!("the backup completed without a restore point"))?;
            let rp: RestorePoint = coffer.restore_point(&name)?;
            let mut obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": format!("{}/{}", super::GROUP, super::VERSION),
                "kind": "RestorePoint",
                "metadata": {"name": name, "namespace": ns, "labels": rp.metadata.labels},
                "spec": rp.spec,
            }))?;
            obj.metadata.namespace = Some(ns.clone());
            let mut last = None;
            for attempt in 0..5u32 {
                match rps.create(&PostParams::default(), &obj).await {
                    Ok(_) => return Ok(()),
                    // Already there: fine if it is this backup's (an earlier attempt made
                    // it), never if someone else put a RestorePoint under that name.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let existing = rps
                            .get(&name)
                            .await
                            .with_context(|| format!("reading RestorePoint {ns}/{name}"))?;
                        let same =
                            existing.data.get("spec") == Some(&serde_json::to_value(&rp.spec)?);
                        return if same {
                            Ok(())
                        } else {
                            Err(anyhow!(
                                "RestorePoint {ns}/{name} already exists and is not this backup's; the backup is not recorded"
                            ))
                        };
                    }
                    Err(e) => {
                        last = Some(e);
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                }
            }
            Err(anyhow!(
                "creating RestorePoint {ns}/{name}: {}",
                last.map(|e| e.to_string()).unwrap_or_default()
            ))
        }
        ActionKind::Delete => {
            if let Some(rp) = &p.input {
                match rps.delete(rp.name(), &Default::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        return Err(e).context(format!("deleting RestorePoint {ns}/{}", rp.name()));
                    }
                }
            }
            Ok(())
        }
        ActionKind::Restore | ActionKind::Other(_) => Ok(()),
    }
}
