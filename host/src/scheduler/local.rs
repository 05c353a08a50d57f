//! The local scheduler: `coffer daemon` with no cluster. One per state dir (a lock file held
//! for its life; a second one exits saying which process has it). It looks at every Policy
//! when a tick falls due (and at least each minute, so new and changed Policies are seen):
//! the newest due tick runs if it is within `startingDeadline`, older ones the scheduler
//! slept through are recorded `Missed`, a tick that comes while the Policy's previous one
//! still runs is recorded `Skipped`. A tick's backups are named after it
//! ([`super::tick::action_set_name`]), so even a second scheduler could not run one twice.
//! A Policy with `spec.stream` also gets its stream's links ([`super::stream`]) between
//! ticks, never beside one of its ticks.

use super::clock::Clock;
use super::plan;
use super::tick::{self, TickKind};
use crate::action::Coffer;
use crate::model::{Kind, Policy, PolicyStatus};
use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Hold the state dir's scheduler lock for the life of the returned file.
fn lock(coffer: &Coffer) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = coffer.home.catalog().with_file_name("scheduler.lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        bail!(
            "another coffer daemon (pid {}) already schedules this state dir ({}); stop it first, or give this one another COFFER_HOME",
            holder.trim(),
            path.display()
        );
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}

struct Scheduler {
    coffer: Arc<Coffer>,
    /// Policies with a tick running.
    running: Mutex<HashSet<String>>,
    /// Status writes one at a time (the loop and finishing ticks both write).
    writes: tokio::sync::Mutex<()>,
    /// Policies with stream links being made, and when each one's next links fall due.
    streaming: Mutex<HashSet<String>>,
    next_link: Mutex<HashMap<String, Timestamp>>,
    /// Where the streams' gauges go (`--metrics-addr`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Wakes the loop before its time (a stream behind the source links again at once).
    nudge: tokio::sync::Notify,
}

pub async fn run(
    coffer: Arc<Coffer>,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> Result<()> {
    let _lock = lock(&coffer)?;
    tracing::info!(state = %coffer.home.catalog().display(), "coffer daemon: scheduling the Policies of this state dir");
    let s = Arc::new(Scheduler {
        coffer,
        running: Mutex::default(),
        writes: tokio::sync::Mutex::new(()),
        streaming: Mutex::default(),
        next_link: Mutex::default(),
        metrics,
        nudge: tokio::sync::Notify::new(),
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let now = clock.now();
        let mut wake = now + SignedDuration::from_secs(60);
        for p in s.coffer.catalog.list::<Policy>(Kind::Policy)? {
            match s.pass(&p, now).await {
                Ok(Some(next)) => wake = wake.min(next),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(policy = %p.name(), error = %format!("{e:#}"), "Policy not scheduled")
                }
            }
            if let Some(next) = s.stream_pass(&p, now) {
                wake = wake.min(next);
            }
        }
        tokio::select! {
            _ = clock.wait_until(wake) => {}
            _ = s.nudge.notified() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

impl Scheduler {
    /// Deal with `p`'s due ticks at `now`; when its next tick falls.
    async fn pass(self: &Arc<Self>, p: &Policy, now: Timestamp) -> Result<Option<Timestamp>> {
        let name = p.name().to_string();
        let running = self.running.lock().unwrap().contains(&name);
        let plan = match plan::plan(p, now, running) {
            Ok(plan) => plan,
            Err(e) => {
                self.update(&name, |st| st.error = Some(e.clone())).await?;
                anyhow::bail!(e);
            }
        };
        let start = plan.start;
        self.update(&name, |st| {
            st.observed_time = Some(now.to_string());
            st.next_tick = plan.next.map(|t| t.to_string());
            st.error = None;
            if let Some(t) = plan.last_tick {
                st.last_tick = Some(t.to_string());
            }
            plan::push_runs(st, plan.runs);
            if let Some(t) = start {
                st.running_tick = Some(t.to_string());
            }
        })
        .await?;
        if let Some(tick) = start {
            self.running.lock().unwrap().insert(name.clone());
            let s = self.clone();
            let policy = p.clone();
            tokio::spawn(async move {
                tracing::info!(policy = %policy.name(), tick = %tick, "tick");
                let record = match tick::tick(&s.coffer, &policy, tick, TickKind::Scheduled).await {
                    Err(e) => plan::record(tick, "Failed", &format!("{e:#}")),
                    Ok(report) => plan::finished(tick, &report),
                };
                s.running.lock().unwrap().remove(policy.name());
                let name = policy.name().to_string();
                if let Err(e) = s
                    .update(&name, |st| {
                        st.running_tick = None;
                        plan::push_runs(st, vec![record]);
                    })
                    .await
                {
                    tracing::warn!(policy = %name, error = %format!("{e:#}"), "recording a tick");
                }
            });
        }
        Ok(plan.next)
    }

    /// Start `p`'s stream links if they are due at `now`; when to look again.
    fn stream_pass(self: &Arc<Self>, p: &Policy, now: Timestamp) -> Option<Timestamp> {
        let every = crate::policy::rules(&p.spec).ok()?.stream_every?;
        let max_lag = p.spec.stream.as_ref().and_then(|s| s.max_lag_records);
        if p.spec.paused {
            return None;
        }
        let name = p.name().to_string();
        let due = self
            .next_link
            .lock()
            .unwrap()
            .get(&name)
            .copied()
            .unwrap_or(now);
        let busy = self.streaming.lock().unwrap().contains(&name)
            || self.running.lock().unwrap().contains(&name);
        if busy || now < due {
            return Some(due.max(now + SignedDuration::from_secs(1)));
        }
        let next = now + SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX);
        self.next_link.lock().unwrap().insert(name.clone(), next);
        self.streaming.lock().unwrap().insert(name.clone());
        let s = self.clone();
        let policy = p.clone();
        tokio::spawn(async move {
            let statuses =
                super::stream::links(&s.coffer, &policy, now, &policy.status.streams).await;
            let due = super::stream::next_due(now, every, max_lag, &statuses);
            if due < next {
                s.next_link.lock().unwrap().insert(name.clone(), due);
            }
            s.streaming.lock().unwrap().remove(&name);
            if due < next {
                s.nudge.notify_one();
            }
            if let Some(m) = &s.metrics {
                for st in &statuses {
                    m.set_stream(&name, st);
                }
            }
            if let Err(e) = s.update(&name, |st| st.streams = statuses).await {
                tracing::warn!(policy = %name, error = %format!("{e:#}"), "recording a stream link");
            }
        });
        Some(next)
    }

    /// Change `name`'s status as it is in the catalog now (an apply may have changed the
    /// spec meanwhile; a deleted Policy is left deleted).
    async fn update(&self, name: &str, f: impl FnOnce(&mut PolicyStatus)) -> Result<()> {
        let _one = self.writes.lock().await;
        let Some(mut p) = self.coffer.catalog.get::<Policy>(Kind::Policy, name)? else {
            return Ok(());
        };
        f(&mut p.status);
        self.coffer.catalog.put(Kind::Policy, name, &p)
    }
}
