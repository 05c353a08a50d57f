//! `coffer daemon`: a kube-rs controller reconciling ActionSets, active only while it holds
//! the Lease (other replicas stand by). Reconciling is quick and idempotent; actions run as
//! tasks, each with a cancel channel. What to do with an ActionSet is decided in
//! `decide.rs`; here the decisions are carried out:
//! - no status / Pending: claim it (Running, runner = this instance), run it;
//! - Running here: `spec.cancel` or a deletion stops it (its partial backup is removed);
//! - Running elsewhere: settle it once its runner's heartbeat has stood still long enough;
//! - Completed / Failed: nothing.
//!
//! kube-runtime's `finalizer()` holds a live ActionSet while it runs: a deletion stops the
//! action and lets the object go once it has stopped. Finished ActionSets carry no
//! finalizer, so they can be deleted whether a daemon runs or not.

use super::decide::{self, Decision, Facts};
use super::kinds::{ActionSetResource, StatusPatch, key, patch_status, status};
use super::lease::LeaseLock;
use super::run::{self, ClusterCtx};
use super::{ClusterTarget, Error, FINALIZER, resource};
use crate::action::Coffer;
use crate::metrics::{self, Metrics};
use crate::model::Phase;
use futures::StreamExt;
use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// How the daemon runs (the CLI's `coffer daemon` flags, see `cli::DaemonArgs`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Namespace of the Blueprints, Profiles, BlueprintBindings and the Lease (default:
    /// COFFER_NAMESPACE, else `coffer`).
    pub namespace: Option<String>,
    /// This instance's name in the Lease and in `status.runner` (default: host name and pid).
    pub identity: Option<String>,
    pub lease_name: String,
    /// How long the Lease lasts without renewal (renewed every third of it).
    pub lease_duration: Duration,
    /// Where Prometheus metrics (`/metrics`) and `/healthz` are served.
    pub metrics_addr: SocketAddr,
    /// Actions run at the same time; more wait, Running, for a slot.
    pub max_concurrent: usize,
    /// A Running ActionSet of another runner whose heartbeat this instance has seen
    /// unchanged this long is settled as lost (runners beat every 2 s).
    pub runner_timeout: Duration,
    /// Movers (docs/movers.md); none: every byte goes through this process.
    pub movers: Option<super::run::MoverConfig>,
}

/// On an ActionSet a `coffer … --local-run` process made to run itself.
pub const LOCAL_RUN_ANNOTATION: &str = "coffer.dev/local-run";

struct Daemon {
    coffer: Arc<Coffer>,
    cx: Arc<ClusterCtx>,
    /// Actions this instance runs, by namespace/name: the sender stops one with a reason.
    running: Mutex<HashMap<String, watch::Sender<Option<String>>>>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Other runners' heartbeats as last seen, and when this instance saw them change: a
    /// runner is judged by this instance's clock, never by timestamps from another machine.
    seen: Mutex<HashMap<String, (String, Instant)>>,
    runner_timeout: Duration,
}

fn identity(args: &DaemonConfig) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "coffer".into());
        format!("{host}-{}", std::process::id())
    })
}

pub async fn run(
    coffer: Coffer,
    cluster: &ClusterTarget,
    args: DaemonConfig,
) -> anyhow::Result<()> {
    let (client, _, config) = cluster.connect_with_config().await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(super::config_namespace);
    let identity = identity(&args);
    let metrics = Arc::new(Metrics::default());
    let listener = metrics::bind(args.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    tokio::spawn(metrics::serve(listener, metrics.clone()));
    let lock = LeaseLock::new(
        Api::namespaced(client.clone(), &ns),
        args.lease_name.clone(),
        identity.clone(),
        args.lease_duration,
    );
    tracing::info!(namespace = %ns, identity = %identity, lease = %args.lease_name, "coffer daemon starting");
    tokio::select! {
        r = lock.acquire() => r?,
        _ = shutdown_signal() => return Ok(()),
    }
    metrics.set_leader(true);
    coffer.set_manifest_key(super::keys::manifest_key(&client, &ns).await?);
    let d = Arc::new(Daemon {
        coffer: Arc::new(coffer),
        cx: Arc::new(ClusterCtx {
            client: client.clone(),
            config,
            config_ns: ns,
            identity: identity.clone(),
            movers: args.movers.clone(),
        }),
        running: Mutex::default(),
        seen: Mutex::default(),
        runner_timeout: args.runner_timeout,
        slots: Arc::new(Semaphore::new(args.max_concurrent.max(1))),
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "coffer".into(),
                instance: Some(identity),
            },
        ),
    });
    // The watch is of untyped objects: one malformed ActionSet (a tenant may create any)
    // must not stop the typed list of every other one; it is refused on its own.
    let ar = resource("ActionSet");
    let controller = Controller::new_with(
        Api::<DynamicObject>::all_with(client, &ar),
        watcher::Config::default(),
        ar,
    )
    .run(reconcile, error_policy, d.clone())
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "reconcile");
        }
    });
    let profiles = super::profile_check::run(&d.cx);
    let policies = super::policies::Scheduler::new(
        d.coffer.clone(),
        d.cx.clone(),
        metrics.clone(),
        d.recorder.clone(),
        crate::scheduler::clock::from_env(),
    )
    .run();
    tokio::select! {
        _ = controller => anyhow::bail!("the ActionSet watch ended"),
        _ = profiles => anyhow::bail!("the Profile checks ended"),
        _ = policies => anyhow::bail!("the Policy scheduler ended"),
        why = lock.hold() => {
            metrics.set_leader(false);
            // Whatever runs here is settled by the next leader.
            anyhow::bail!("stopped leading: {why}")
        }
        _ = shutdown_signal() => {
            d.stop_all("the coffer daemon was stopped").await;
            metrics.set_leader(false);
            lock.release().await;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn error_policy(o: Arc<DynamicObject>, e: &Error, d: Arc<Daemon>) -> Action {
    d.metrics.reconcile_failed(e.metric_label());
    match e {
        // Waiting for an action to stop is expected, not worth a warning.
        Error::StillRunning(_) => Action::requeue(Duration::from_secs(1)),
        // Trying the same input again cannot help; a change to the object requeues it.
        e if !e.retryable() => {
            tracing::warn!(actionset = %key(o.as_ref()), error = %e, "cannot reconcile; waiting for the ActionSet to change");
            Action::await_change()
        }
        _ => {
            tracing::warn!(actionset = %key(o.as_ref()), error = %e, "reconcile failed; retrying in 5s");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

async fn reconcile(o: Arc<DynamicObject>, d: Arc<Daemon>) -> Result<Action, Error> {
    let ns = o.metadata.namespace.clone().unwrap_or_default();
    let name = o.metadata.name.clone().unwrap_or_default();
    let sets: Api<ActionSetResource> = Api::namespaced(d.cx.client.clone(), &ns);
    let raw: Api<DynamicObject> =
        Api::namespaced_with(d.cx.client.clone(), &ns, &resource("ActionSet"));
    // The controller's cache can lag; decisions are made on the object as it is now.
    let Some(current) = raw.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let set: ActionSetResource =
        match serde_json::to_value(&current).and_then(serde_json::from_value) {
            Ok(s) => s,
            Err(e) => {
                refuse_malformed(&raw, &current, &e.to_string()).await?;
                return Ok(Action::await_change());
            }
        };
    let finished = matches!(status(&set).phase, Phase::Completed | Phase::Failed);
    if finished && set.metadata.deletion_timestamp.is_none() {
        remove_finalizer(&sets, &set).await?;
        return Ok(Action::await_change());
    }
    let d2 = d.clone();
    finalizer(&sets, FINALIZER, Arc::new(set), |event| async move {
        match event {
            Finalizer::Apply(o) => d2.apply(&o).await,
            Finalizer::Cleanup(o) => d2.cleanup(&o).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Other(anyhow::anyhow!("finalizer: {other}")),
    })
}

/// An ActionSet that does not parse is failed (once) with the reason, never retried.
async fn refuse_malformed(
    raw: &Api<DynamicObject>,
    o: &DynamicObject,
    why: &str,
) -> Result<(), Error> {
    let phase = o.data.pointer("/status/phase").and_then(|p| p.as_str());
    if matches!(phase, Some("Completed" | "Failed")) {
        return Ok(());
    }
    let name = o.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"status": StatusPatch::failed(format!(
        "the ActionSet is not valid: {why}"
    ))});
    raw.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// A finished ActionSet keeps no finalizer (it was held only while it ran).
async fn remove_finalizer(
    sets: &Api<ActionSetResource>,
    o: &ActionSetResource,
) -> Result<(), Error> {
    let Some(f) = &o.metadata.finalizers else {
        return Ok(());
    };
    if !f.iter().any(|x| x == FINALIZER) {
        return Ok(());
    }
    let keep: Vec<&String> = f.iter().filter(|x| *x != FINALIZER).collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": keep,
        "resourceVersion": o.metadata.resource_version,
    }});
    let name = o.metadata.name.clone().unwrap_or_default();
    match sets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Daemon {
    fn facts(&self, o: &ActionSetResource) -> Facts {
        let k = key(o);
        let st = status(o);
        let age = o
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        Facts {
            here: self.running.lock().unwrap().contains_key(&k),
            mine: st.runner.as_deref() == Some(self.cx.identity.as_str()),
            quiet_for: self.quiet_for(&k, o),
            age,
            runner_timeout: self.runner_timeout,
        }
    }

    /// How long this instance has seen the runner's heartbeat stand still (`None` the first
    /// time, and whenever it changed).
    fn quiet_for(&self, k: &str, o: &ActionSetResource) -> Option<Duration> {
        if status(o).phase != Phase::Running {
            self.seen.lock().unwrap().remove(k);
            return None;
        }
        let beat = status(o)
            .heartbeat
            .or_else(|| o.metadata.resource_version.clone())
            .unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        match seen.get(k) {
            Some((last, since)) if *last == beat => Some(since.elapsed()),
            _ => {
                seen.insert(k.to_string(), (beat, Instant::now()));
                None
            }
        }
    }

    async fn apply(self: &Arc<Self>, o: &ActionSetResource) -> Result<Action, Error> {
        let decision = decide::decide(o, self.facts(o));
        self.carry_out(o, decision).await
    }

    async fn cleanup(self: &Arc<Self>, o: &ActionSetResource) -> Result<Action, Error> {
        match decide::on_delete(o, self.facts(o)) {
            Ok(()) => Ok(Action::await_change()),
            Err(Decision::Settle) => {
                self.carry_out(o, Decision::Settle).await?;
                Ok(Action::await_change())
            }
            Err(d) => {
                self.carry_out(o, d).await?;
                Err(Error::StillRunning(key(o)))
            }
        }
    }

    async fn carry_out(
        self: &Arc<Self>,
        o: &ActionSetResource,
        d: Decision,
    ) -> Result<Action, Error> {
        let k = key(o);
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let name = o.metadata.name.clone().unwrap_or_default();
        let sets: Api<ActionSetResource> = Api::namespaced(self.cx.client.clone(), &ns);
        match d {
            Decision::Wait => {}
            Decision::Requeue(after) => return Ok(Action::requeue(after)),
            Decision::Start { deadline } => self.start(o.clone(), deadline).await?,
            Decision::Refuse(why) => {
                patch_status(&sets, &name, &StatusPatch::failed(why), None).await?;
            }
            Decision::Stop(why) => {
                if let Some(tx) = self.running.lock().unwrap().get(&k) {
                    let _ = tx.send(Some(why));
                }
            }
            Decision::Settle => {
                self.seen.lock().unwrap().remove(&k);
                super::settle::settle_stale(&self.cx, self.coffer.manifest_key()?, o).await?;
                self.event(
                    o,
                    EventType::Warning,
                    "RunnerLost",
                    "Settle",
                    status(o).runner.map(|r| format!("its runner {r} is gone")),
                )
                .await;
            }
        }
        Ok(Action::await_change())
    }

    async fn event(
        &self,
        o: &ActionSetResource,
        type_: EventType,
        reason: &str,
        action: &str,
        note: Option<String>,
    ) {
        let reference = o.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: note.map(|n| n.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "publishing an event");
        }
    }

    async fn start(
        self: &Arc<Self>,
        o: ActionSetResource,
        deadline: Option<Duration>,
    ) -> Result<(), Error> {
        let k = key(&o);
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let name = o.metadata.name.clone().unwrap_or_default();
        let sets: Api<ActionSetResource> = Api::namespaced(self.cx.client.clone(), &ns);
        let (tx, rx) = watch::channel(None);
        self.running.lock().unwrap().insert(k.clone(), tx.clone());
        // The claim names the version it read: if a `--local-run` CLI (or anyone) claimed it
        // meanwhile, the API server refuses it and this instance leaves the action alone.
        let claimed = match run::claim(&sets, &o, &self.cx.identity).await {
            Ok(c) => c,
            Err(e) if run::lost_claim(&e) => {
                self.running.lock().unwrap().remove(&k);
                tracing::info!(actionset = %k, "another runner claimed it first");
                return Ok(());
            }
            Err(e) => {
                self.running.lock().unwrap().remove(&k);
                return Err(e.into());
            }
        };
        self.metrics.started();
        let action = o.spec.action.clone();
        tracing::info!(actionset = %k, action = %action, workload = %o.spec.workload, "starting");
        self.event(
            &o,
            EventType::Normal,
            "Started",
            "Run",
            Some(format!("{action} of {}", o.spec.workload)),
        )
        .await;
        let d = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let _slot = d.slots.clone().acquire_owned().await;
            let outcome = async {
                let p = super::resolve::prepare(&d.coffer, &d.cx, &claimed, Some(tx)).await?;
                run::execute(&d.coffer, &p, rx, deadline).await
            }
            .await;
            let (result, bytes) = match outcome {
                Ok(done) => {
                    let ok = done.status.phase == Phase::Completed;
                    let note = if ok {
                        Some(match &done.status.restore_point {
                            Some(rp) => format!("RestorePoint {rp}"),
                            None => format!("{action} completed"),
                        })
                    } else {
                        done.status.error.clone()
                    };
                    let (t, reason) = if ok {
                        (EventType::Normal, "Completed")
                    } else {
                        (EventType::Warning, "Failed")
                    };
                    d.event(&o, t, reason, "Run", note).await;
                    (if ok { "completed" } else { "failed" }, done.status.bytes)
                }
                Err(e) => {
                    // It never got far enough to record its own end (its subject, Blueprint
                    // or Profile could not be read).
                    let why = match super::error::refusal_hint(&e, &ns) {
                        Some(hint) => format!("{e:#}. {hint}"),
                        None => format!("{e:#}"),
                    };
                    tracing::error!(actionset = %k, error = %why, "action failed");
                    let _ =
                        patch_status(&sets, &name, &StatusPatch::failed(why.clone()), None).await;
                    d.event(&o, EventType::Warning, "Failed", "Run", Some(why))
                        .await;
                    ("failed", 0)
                }
            };
            d.metrics
                .finished(&action, result, started.elapsed().as_secs_f64(), bytes);
            d.running.lock().unwrap().remove(&k);
            // Finished: the next reconcile drops the finalizer (or lets a deleted one go).
            if let Ok(Some(cur)) = sets.get_opt(&name).await {
                let _ = remove_finalizer(&sets, &cur).await;
            }
        });
        Ok(())
    }

    /// Stop every running action (graceful shutdown) and wait for them to record it.
    async fn stop_all(&self, why: &str) {
        let senders: Vec<_> = self.running.lock().unwrap().values().cloned().collect();
        for tx in senders {
            let _ = tx.send(Some(why.to_string()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.running.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
