//! `coffer daemon`: a kube-rs controller reconciling ActionSets, active only while it holds
//! the Lease (other replicas stand by). Reconciling is quick and idempotent; actions run
//! as tasks, each with a cancel channel:
//! - no status / Pending: claim it (finalizer, Running, runner = this instance), run it;
//! - Running here: `spec.cancel` or a deletion stops it (its partial backup is removed);
//! - Running elsewhere: this instance leads, so that runner is gone: settle it;
//! - Completed / Failed: nothing (the finalizer is dropped).

use super::lease::LeaseLock;
use super::metrics::{self, Metrics};
use super::run::{self, ClusterCtx, patch_status, set_finalizer};
use super::{ClusterTarget, api, key, resource, spec_of, status_of};
use crate::action::Coffer;
use crate::model::{ActionSetSpec, ActionSetStatus, Phase, now_rfc3339};
use anyhow::{Result, bail};
use futures::StreamExt;
use kube::Resource;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use serde_json::json;
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
}

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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(String);

impl From<anyhow::Error> for ReconcileError {
    fn from(e: anyhow::Error) -> Self {
        ReconcileError(format!("{e:#}"))
    }
}

fn identity(args: &DaemonConfig) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "coffer".into());
        format!("{host}-{}", std::process::id())
    })
}

pub async fn run(coffer: Coffer, cluster: &ClusterTarget, args: DaemonConfig) -> Result<()> {
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
    tokio::select! {
        _ = controller => bail!("the ActionSet watch ended"),
        why = lock.hold() => {
            metrics.set_leader(false);
            // Whatever runs here is settled by the next leader.
            bail!("stopped leading: {why}")
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

fn error_policy(o: Arc<DynamicObject>, e: &ReconcileError, _: Arc<Daemon>) -> Action {
    tracing::warn!(actionset = %key(&o), error = %e, "reconcile failed; retrying in 5s");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(o: Arc<DynamicObject>, d: Arc<Daemon>) -> Result<Action, ReconcileError> {
    let k = key(&o);
    let ns = o.metadata.namespace.clone().unwrap_or_default();
    let name = o.metadata.name.clone().unwrap_or_default();
    let sets = api(&d.cx.client, "ActionSet", &ns);
    // The controller's cache can lag; decisions are made on the object as it is now.
    let Some(o) = sets.get_opt(&name).await.map_err(anyhow::Error::from)? else {
        return Ok(Action::await_change());
    };
    let status: ActionSetStatus = status_of(&o);
    let here = d.running.lock().unwrap().get(&k).cloned();
    if o.metadata.deletion_timestamp.is_some() {
        match here {
            Some(tx) => {
                let _ = tx.send(Some("cancelled: the ActionSet was deleted".into()));
            }
            None => set_finalizer(&sets, &o, false).await?,
        }
        return Ok(Action::await_change());
    }
    let spec: Result<ActionSetSpec> = spec_of(&o);
    match (status.phase, here) {
        (Phase::Completed | Phase::Failed, _) => {
            set_finalizer(&sets, &o, false).await?;
        }
        (Phase::Running, Some(tx)) => {
            if spec.is_ok_and(|s| s.cancel) {
                let _ = tx.send(Some("cancelled (spec.cancel)".into()));
            }
        }
        (Phase::Running, None) => {
            // Its runner is gone if it is this instance (a restart: nothing of it runs
            // here), or its heartbeat has stood still for the runner timeout.
            let runner = status.runner.clone().unwrap_or_default();
            if runner != d.cx.identity
                && let Some(wait) = d.runner_alive(&k, &status, &o)
            {
                return Ok(Action::requeue(wait));
            }
            d.seen.lock().unwrap().remove(&k);
            super::settle::settle_stale(&d.coffer, &d.cx, &o).await?;
            d.event(
                &o,
                EventType::Warning,
                "RunnerLost",
                "Settle",
                status.runner.map(|r| format!("its runner {r} is gone")),
            )
            .await;
        }
        (Phase::Pending, _) => {
            // `coffer … --local-run` made it to run it itself: leave it to that process for a
            // while (it claims it at once), then call it abandoned.
            if o.annotations().contains_key(LOCAL_RUN_ANNOTATION) {
                let age = o
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or_default();
                if age < d.runner_timeout {
                    return Ok(Action::requeue(d.runner_timeout - age));
                }
                patch_status(&sets, &name, json!({"phase": "Failed", "endTime": now_rfc3339(), "error": "the `coffer --local-run` process that made this ActionSet never started it"})).await?;
                return Ok(Action::await_change());
            }
            match spec {
                Err(e) => {
                    patch_status(&sets, &name, json!({"phase": "Failed", "endTime": now_rfc3339(), "error": format!("{e:#}")})).await?;
                }
                Ok(s) if s.cancel => {
                    patch_status(&sets, &name, json!({"phase": "Failed", "endTime": now_rfc3339(), "error": "cancelled before it started"})).await?;
                }
                Ok(s) => d.start(o, s).await?,
            }
        }
    }
    Ok(Action::await_change())
}

/// On an ActionSet a `coffer … --local-run` process made to run itself.
pub const LOCAL_RUN_ANNOTATION: &str = "coffer.dev/local-run";

impl Daemon {
    /// `Some(wait)` while another runner's heartbeat keeps moving (check again after
    /// `wait`); `None` once it has stood still for the runner timeout.
    fn runner_alive(
        &self,
        k: &str,
        status: &ActionSetStatus,
        o: &DynamicObject,
    ) -> Option<Duration> {
        let beat = status
            .heartbeat
            .clone()
            .or_else(|| o.metadata.resource_version.clone())
            .unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        match seen.get(k) {
            Some((last, since)) if *last == beat => {
                let still = since.elapsed();
                (still < self.runner_timeout).then(|| self.runner_timeout - still)
            }
            _ => {
                seen.insert(k.to_string(), (beat, Instant::now()));
                Some(self.runner_timeout)
            }
        }
    }

    async fn event(
        &self,
        o: &DynamicObject,
        type_: EventType,
        reason: &str,
        action: &str,
        note: Option<String>,
    ) {
        let reference = o.object_ref(&resource("ActionSet"));
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

    async fn start(self: &Arc<Self>, o: DynamicObject, spec: ActionSetSpec) -> Result<()> {
        let k = key(&o);
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let name = o.metadata.name.clone().unwrap_or_default();
        let sets = api(&self.cx.client, "ActionSet", &ns);
        let deadline = match spec
            .deadline
            .as_deref()
            .map(humantime::parse_duration)
            .transpose()
        {
            Ok(d) => d,
            Err(e) => {
                return patch_status(
                    &sets,
                    &name,
                    json!({"phase": "Failed", "endTime": now_rfc3339(),
                    "error": format!("spec.deadline: {e} (write it like 30m or 2h)")}),
                )
                .await;
            }
        };
        let (tx, rx) = watch::channel(None);
        self.running.lock().unwrap().insert(k.clone(), tx);
        // The claim names the version it read: if a `--local-run` CLI (or anyone) claimed it
        // meanwhile, the API server refuses it and this instance leaves the action alone.
        let claimed = async {
            run::claim(&sets, &o, &self.cx.identity).await?;
            set_finalizer(&sets, &o, true).await
        }
        .await;
        match claimed {
            Ok(()) => {}
            Err(e) if run::lost_claim(&e) => {
                self.running.lock().unwrap().remove(&k);
                tracing::info!(actionset = %k, "another runner claimed it first");
                return Ok(());
            }
            Err(e) => {
                self.running.lock().unwrap().remove(&k);
                return Err(e);
            }
        }
        self.metrics.started();
        tracing::info!(actionset = %k, action = %spec.action, workload = %spec.workload, "starting");
        self.event(
            &o,
            EventType::Normal,
            "Started",
            "Run",
            Some(format!("{} of {}", spec.action, spec.workload)),
        )
        .await;
        let d = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let _slot = d.slots.clone().acquire_owned().await;
            let outcome = async {
                let p = run::prepare(&d.coffer, &d.cx, &o).await?;
                patch_status(
                    &sets,
                    &name,
                    json!({"prefix": p.prefix, "blueprint": p.blueprint.name(),
                    "profile": p.profile.name()}),
                )
                .await?;
                run::execute(&d.coffer, &d.cx, &sets, &p, rx, deadline).await
            }
            .await;
            let (result, bytes) = match outcome {
                Ok(done) => {
                    let ok = done.status.phase == Phase::Completed;
                    let note = if ok {
                        Some(match &done.status.restore_point {
                            Some(rp) => format!("RestorePoint {rp}"),
                            None => format!("{} completed", spec.action),
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
                    let why = format!("{e:#}");
                    tracing::error!(actionset = %k, error = %why, "action failed");
                    let _ = patch_status(
                        &sets,
                        &name,
                        json!({"phase": "Failed", "endTime": now_rfc3339(),
                        "error": why, "runner": null}),
                    )
                    .await;
                    d.event(&o, EventType::Warning, "Failed", "Run", Some(why))
                        .await;
                    ("failed", 0)
                }
            };
            d.metrics
                .finished(&spec.action, result, started.elapsed().as_secs_f64(), bytes);
            d.running.lock().unwrap().remove(&k);
            if let Ok(Some(cur)) = sets.get_opt(&name).await
                && let Err(e) = set_finalizer(&sets, &cur, false).await
            {
                tracing::warn!(actionset = %k, error = %format!("{e:#}"), "removing the finalizer");
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
