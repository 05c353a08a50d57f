//! The local scheduler: `coffer daemon` with no cluster. One per state dir (a lock file held
//! for its life; a second one exits saying which process has it). It looks at every Policy
//! when a tick falls due (and at least each minute, so new and changed Policies are seen):
//! the newest due tick runs if it is within `startingDeadline`, older ones the scheduler
//! slept through are recorded `Missed`, a tick that comes while the Policy's previous one
//! still runs is recorded `Skipped`. A tick's backups are named after it
//! ([`super::tick::action_set_name`]), so even a second scheduler could not run one twice.

use super::clock::Clock;
use super::tick::{self, TickKind};
use crate::action::Coffer;
use crate::model::{Kind, POLICY_RUNS_KEPT, Policy, PolicyRun, PolicyStatus};
use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Ticks looked at in one pass, at most (a Policy created years ago with a per-minute cron
/// must not make the scheduler walk millions of them).
const MAX_DUE: usize = 100_000;

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
}

pub async fn run(coffer: Arc<Coffer>, clock: Arc<dyn Clock>) -> Result<()> {
    let _lock = lock(&coffer)?;
    tracing::info!(state = %coffer.home.catalog().display(), "coffer daemon: scheduling the Policies of this state dir");
    let s = Arc::new(Scheduler {
        coffer,
        running: Mutex::default(),
        writes: tokio::sync::Mutex::new(()),
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
        }
        tokio::select! {
            _ = clock.wait_until(wake) => {}
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
        let r = crate::policy::rules(&p.spec).map_err(anyhow::Error::msg)?;
        let name = p.name().to_string();
        let since = p
            .status
            .last_tick
            .as_deref()
            .or(p.metadata.creation_timestamp.as_deref())
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or(now);
        let next = r.frequency.next_after(now, &r.timezone);
        let mut due = Vec::new();
        let mut t = since;
        while let Some(n) = r.frequency.next_after(t, &r.timezone) {
            if n > now || due.len() >= MAX_DUE {
                break;
            }
            due.push(n);
            t = n;
        }
        let mut runs = Vec::new();
        let mut start = None;
        if let Some(&newest) = due.last() {
            if due.len() > 1 {
                runs.push(PolicyRun {
                    tick: due[due.len() - 2].to_string(),
                    result: "Missed".into(),
                    count: due.len() as u64 - 1,
                    message: Some("the scheduler was not running at these ticks".into()),
                });
            }
            let late = now.duration_since(newest);
            if p.spec.paused {
                runs.push(run_record(newest, "Skipped", "the Policy is paused"));
            } else if self.running.lock().unwrap().contains(&name) {
                runs.push(run_record(
                    newest,
                    "Skipped",
                    "its previous tick was still running",
                ));
            } else if late > SignedDuration::try_from(r.starting_deadline).unwrap_or_default() {
                runs.push(run_record(
                    newest,
                    "Missed",
                    &format!(
                        "{} late, past its startingDeadline",
                        humantime::format_duration(late.unsigned_abs())
                    ),
                ));
            } else {
                start = Some(newest);
            }
        }
        let last_tick = due.last().copied();
        self.update(&name, |st| {
            st.observed_time = Some(now.to_string());
            if let Some(t) = last_tick {
                st.last_tick = Some(t.to_string());
            }
            push_runs(st, runs);
            if start.is_some() {
                st.running = true;
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
                    Err(e) => run_record(tick, "Failed", &format!("{e:#}")),
                    Ok(report) => {
                        let failed: Vec<String> = report
                            .backups
                            .iter()
                            .chain(&report.deleted)
                            .filter(|o| o.result == "Failed")
                            .map(|o| {
                                format!(
                                    "{} {}: {}",
                                    o.workload,
                                    o.action_set,
                                    o.error.as_deref().unwrap_or("failed")
                                )
                            })
                            .collect();
                        if failed.is_empty() {
                            PolicyRun {
                                tick: tick.to_string(),
                                result: "Completed".into(),
                                count: 1,
                                message: None,
                            }
                        } else {
                            run_record(tick, "Failed", &failed.join("; "))
                        }
                    }
                };
                s.running.lock().unwrap().remove(policy.name());
                let name = policy.name().to_string();
                if let Err(e) = s
                    .update(&name, |st| {
                        st.running = false;
                        push_runs(st, vec![record]);
                    })
                    .await
                {
                    tracing::warn!(policy = %name, error = %format!("{e:#}"), "recording a tick");
                }
            });
        }
        Ok(if p.spec.paused { None } else { next })
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

fn run_record(tick: Timestamp, result: &str, message: &str) -> PolicyRun {
    PolicyRun {
        tick: tick.to_string(),
        result: result.into(),
        count: 1,
        message: Some(message.to_string()),
    }
}

fn push_runs(st: &mut PolicyStatus, runs: Vec<PolicyRun>) {
    st.runs.extend(runs);
    let excess = st.runs.len().saturating_sub(POLICY_RUNS_KEPT);
    st.runs.drain(..excess);
}
