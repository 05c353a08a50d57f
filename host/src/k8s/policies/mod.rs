//! Policies on a cluster, run by the Lease holder: Policy resources live in the daemon's
//! namespace (as Blueprints and Profiles do) and select StatefulSets and Deployments by
//! kind, namespace, label and annotation. What to do at each moment is the same decision
//! as in local mode ([`crate::scheduler::plan`]); a tick's ActionSets are sealed and named
//! after it ([`tick`]), and the tick running is recorded in the Policy's status before its
//! first ActionSet is made, so a leader that takes over finishes it — exactly one ActionSet
//! per (Policy, workload, tick) whichever replica led. The status also carries the last
//! runs, the next tick and every selected workload's compliance; each run is an Event on
//! the Policy and counts in `coffer_policy_runs_total`, compliance in `coffer_compliance`.

pub mod seal;
pub mod select;
pub mod tick;

use super::kinds::{self, PolicyResource};
use super::resource;
use super::run::ClusterCtx;
use crate::action::Coffer;
use crate::metrics::Metrics;
use crate::model::{Policy, PolicyRun, PolicyStatus};
use crate::scheduler::clock::Clock;
use crate::scheduler::plan;
use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use kube::Resource;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// How often the Policies are listed.
const LOOK: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Scheduler {
    pub coffer: Arc<Coffer>,
    pub cx: Arc<ClusterCtx>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    /// Policies with a tick running here.
    running: Mutex<HashSet<String>>,
    /// Woken when a tick ends (compliance is judged again at once).
    ended: tokio::sync::Notify,
}

impl Scheduler {
    pub fn new(
        coffer: Arc<Coffer>,
        cx: Arc<ClusterCtx>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        clock: Arc<dyn Clock>,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            coffer,
            cx,
            metrics,
            recorder,
            clock,
            running: Mutex::default(),
            ended: tokio::sync::Notify::new(),
        })
    }

    fn api(&self) -> Api<PolicyResource> {
        Api::namespaced(self.cx.client.clone(), &self.cx.config_ns)
    }

    /// Schedule until dropped (the daemon stops leading). Policies are listed every
    /// [`LOOK`] (new and changed ones are seen that soon whatever the clock); compliance is
    /// judged again when a Policy changed, a tick ended, or a minute passed.
    pub async fn run(self: Arc<Self>) {
        let mut judged: Option<(std::time::Instant, Timestamp, Vec<String>)> = None;
        loop {
            let now = self.clock.now();
            let mut wake = now + SignedDuration::from_secs(60);
            let policies = match self.policies().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "listing Policies");
                    Vec::new()
                }
            };
            for p in &policies {
                match self.pass(p, now).await {
                    Ok(Some(next)) => wake = wake.min(next),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(policy = %p.name(), error = %format!("{e:#}"), "Policy not scheduled")
                    }
                }
            }
            let specs: Vec<String> = policies
                .iter()
                .map(|p| serde_json::to_string(&(&p.spec, &p.status.runs)).unwrap_or_default())
                .collect();
            let stale = judged.as_ref().is_none_or(|(at, clock, seen)| {
                at.elapsed() >= std::time::Duration::from_secs(60)
                    || now.duration_since(*clock) >= SignedDuration::from_secs(60)
                    || *seen != specs
            });
            if stale {
                match self.judge(&policies, now).await {
                    Ok(()) => judged = Some((std::time::Instant::now(), now, specs)),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "judging compliance"),
                }
            }
            tokio::select! {
                _ = self.clock.wait_until(wake) => {}
                _ = tokio::time::sleep(LOOK) => {}
                _ = self.ended.notified() => judged = None,
            }
        }
    }

    /// The Policies of the namespace; one that does not parse is reported on its own and
    /// the rest still run.
    async fn policies(&self) -> Result<Vec<Policy>> {
        let raw: Api<DynamicObject> = Api::namespaced_with(
            self.cx.client.clone(),
            &self.cx.config_ns,
            &resource("Policy"),
        );
        let mut out = Vec::new();
        for o in raw
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing Policies in namespace {}", self.cx.config_ns))?
            .items
        {
            let name = o.metadata.name.clone().unwrap_or_default();
            match serde_json::to_value(&o).and_then(serde_json::from_value::<PolicyResource>) {
                Ok(r) => out.push(kinds::policy(&r)),
                Err(e) => {
                    let why = format!("the Policy is not valid: {e}");
                    let _ = self.update(&name, |st| st.error = Some(why.clone())).await;
                }
            }
        }
        Ok(out)
    }

    /// Deal with `p`'s due ticks at `now`; when its next tick falls.
    async fn pass(self: &Arc<Self>, p: &Policy, now: Timestamp) -> Result<Option<Timestamp>> {
        let name = p.name().to_string();
        let running = self.running.lock().unwrap().contains(&name);
        let checked = select::selector(p).and_then(|_| plan::plan(p, now, running));
        let plan = match checked {
            Ok(plan) => plan,
            Err(e) => {
                if p.status.error.as_deref() != Some(e.as_str()) {
                    self.update(&name, |st| st.error = Some(e.clone())).await?;
                    self.event(p, EventType::Warning, "Invalid", Some(e.clone()))
                        .await;
                }
                return Ok(None);
            }
        };
        let next = plan.next.map(|t| t.to_string());
        let nothing_new = plan.last_tick.is_none()
            && plan.start.is_none()
            && p.status.next_tick == next
            && p.status.error.is_none();
        if nothing_new {
            return Ok(plan.next);
        }
        let start = plan.start;
        let runs = plan.runs.clone();
        self.update(&name, |st| {
            st.observed_time = Some(now.to_string());
            st.next_tick = next.clone();
            st.error = None;
            if let Some(t) = plan.last_tick {
                st.last_tick = Some(t.to_string());
            }
            plan::push_runs(st, plan.runs.clone());
            if let Some(t) = start {
                st.running_tick = Some(t.to_string());
            }
        })
        .await?;
        for r in &runs {
            self.recorded(p, r).await;
        }
        if let Some(t) = start {
            self.running.lock().unwrap().insert(name);
            let s = self.clone();
            let policy = p.clone();
            tokio::spawn(async move { s.tick(policy, t).await });
        }
        Ok(plan.next)
    }

    async fn tick(self: Arc<Self>, policy: Policy, t: Timestamp) {
        tracing::info!(policy = %policy.name(), tick = %t, "tick");
        let record = match self.coffer.manifest_key() {
            Err(e) => plan::record(t, "Failed", &format!("{e:#}")),
            Ok(key) => {
                let tick = tick::Tick {
                    cx: &self.cx,
                    key,
                    policy: &policy,
                    tick: t,
                };
                match tick.run().await {
                    Ok(report) => plan::finished(t, &report),
                    Err(e) => plan::record(t, "Failed", &format!("{e:#}")),
                }
            }
        };
        let name = policy.name().to_string();
        if let Err(e) = self
            .update(&name, |st| {
                st.running_tick = None;
                plan::push_runs(st, vec![record.clone()]);
            })
            .await
        {
            tracing::warn!(policy = %name, error = %format!("{e:#}"), "recording a tick");
        }
        self.recorded(&policy, &record).await;
        self.running.lock().unwrap().remove(&name);
        self.ended.notify_one();
    }

    /// A run recorded: its Event and its count.
    async fn recorded(&self, p: &Policy, r: &PolicyRun) {
        self.metrics.policy_run(p.name(), &r.result, r.count);
        let t = if matches!(r.result.as_str(), "Completed" | "Skipped") {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let note = match &r.message {
            Some(m) => format!("tick {}: {m}", r.tick),
            None => format!("tick {}", r.tick),
        };
        self.event(p, t, &format!("Tick{}", r.result), Some(note))
            .await;
    }

    async fn event(&self, p: &Policy, type_: EventType, reason: &str, note: Option<String>) {
        let mut r = PolicyResource::new(p.name(), p.spec.clone());
        r.metadata.namespace = Some(self.cx.config_ns.clone());
        let reference = r.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: note.map(|n| n.chars().take(1000).collect()),
            action: "Schedule".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "publishing an event");
        }
    }

    /// Judge compliance; write each Policy's share into its status (when it changed) and
    /// every row into the metrics.
    async fn judge(&self, policies: &[Policy], now: Timestamp) -> Result<()> {
        let key = self.coffer.manifest_key()?;
        let rows =
            select::compliance(&self.cx.client, &self.cx.config_ns, key, policies, now).await?;
        let mut gauge = BTreeMap::new();
        for r in &rows {
            gauge.insert(
                (r.policy.clone().unwrap_or_default(), r.workload.clone()),
                r.state.clone(),
            );
        }
        self.metrics.set_compliance(gauge);
        for p in policies {
            let mine: Vec<_> = rows
                .iter()
                .filter(|r| r.policy.as_deref() == Some(p.name()))
                .cloned()
                .collect();
            if mine != p.status.compliance {
                self.update(p.name(), |st| st.compliance = mine.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// Change `name`'s status as it is on the server now: read, change, replace with the
    /// version read (retried when someone wrote in between; a deleted Policy stays deleted).
    async fn update(&self, name: &str, f: impl Fn(&mut PolicyStatus)) -> Result<()> {
        let api = self.api();
        for _ in 0..5 {
            let Some(mut p) = api
                .get_opt(name)
                .await
                .with_context(|| format!("reading Policy {name}"))?
            else {
                return Ok(());
            };
            let mut st = p.status.take().unwrap_or_default();
            f(&mut st);
            p.status = Some(st);
            match api.replace_status(name, &PostParams::default(), &p).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e).with_context(|| format!("writing Policy {name}'s status")),
            }
        }
        anyhow::bail!("Policy {name}'s status kept changing under this write")
    }
}
