//! Guards: commands that undo what a plugin did to quiesce an application (thaw a
//! filesystem, release a lock), or signed requests that undo a step in a cloud API (delete a
//! temporary instance), run by the host on any end of the action unless the plugin
//! fired or disarmed them: success, failure, trap, deadline, cancellation, SIGTERM, the
//! quiesce limit. Each is recorded on the ActionSet before `add-guard` returns, so a later
//! coffer can run the guards of a runner that died ([`run_command`]).

use crate::cap::ActionScope;
use crate::cap::exec::{ExecBackend, SpawnSpec};
use crate::cap::signed_http::Signers;
use crate::model::{GuardRecord, GuardRequest, GuardState};
use crate::redact::clip;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a guard's command may run (unless its command says otherwise).
pub const GUARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Guards one action may register.
const MAX_GUARDS: usize = 32;

/// The guards of one action, in order of registration.
#[derive(Default)]
pub struct Guards {
    entries: Mutex<Vec<Entry>>,
    /// One guard runs at a time: the end of the action and the quiesce watchdog may both
    /// try, and each guard runs at most once.
    firing: tokio::sync::Mutex<()>,
}

struct Entry {
    record: GuardRecord,
    undo: Undo,
    timeout: Duration,
}

/// What a guard does, and what it does it with. The backend (or Signers) is dropped once
/// the action has ended and every guard is settled: a backend holds the action's scratch
/// directory and task pod until it goes.
#[derive(Clone)]
pub enum Undo {
    Command {
        spec: SpawnSpec,
        backend: Option<Arc<dyn ExecBackend>>,
    },
    Request {
        request: GuardRequest,
        signers: Option<Arc<Signers>>,
    },
}

impl Undo {
    fn release(&mut self) {
        match self {
            Undo::Command { backend, .. } => *backend = None,
            Undo::Request { signers, .. } => *signers = None,
        }
    }

    /// Run it to its end: `Ok` with what it ended with.
    async fn run(self, timeout: Duration) -> Option<Result<String, String>> {
        match self {
            Undo::Command { spec, backend } => {
                let b = backend?;
                Some(
                    run_command(b.as_ref(), spec, timeout)
                        .await
                        .map(|()| "exit 0".into()),
                )
            }
            Undo::Request { request, signers } => {
                let s = signers?;
                Some(send_request(&s, &request, timeout).await)
            }
        }
    }
}

/// Send a request guard's request: `Ok` with the answer's status.
pub async fn send_request(
    signers: &Signers,
    request: &GuardRequest,
    timeout: Duration,
) -> Result<String, String> {
    signers
        .send_guard(request, timeout)
        .await
        .map(|status| format!("answer {status}"))
}

impl Guards {
    /// What is recorded on the ActionSet.
    pub fn records(&self) -> Vec<GuardRecord> {
        let e = self.entries.lock().unwrap();
        e.iter().map(|e| e.record.clone()).collect()
    }

    pub fn armed(&self) -> usize {
        let e = self.entries.lock().unwrap();
        e.iter()
            .filter(|e| e.record.state == GuardState::Armed)
            .count()
    }

    /// Register a guard; its index. Refused past [`MAX_GUARDS`].
    pub(super) fn add(
        &self,
        record: GuardRecord,
        undo: Undo,
        timeout: Duration,
    ) -> Result<usize, String> {
        let mut e = self.entries.lock().unwrap();
        if e.len() >= MAX_GUARDS {
            return Err(format!(
                "an action may register at most {MAX_GUARDS} guards"
            ));
        }
        e.push(Entry {
            record,
            undo,
            timeout,
        });
        Ok(e.len() - 1)
    }

    /// Forget a guard that could not be recorded (the plugin is told, and must not take the
    /// step it was to guard).
    pub(super) fn forget(&self, i: usize) {
        let mut e = self.entries.lock().unwrap();
        if i + 1 == e.len() {
            e.pop();
        }
    }

    /// Never run guard `i`. False when it is no longer armed.
    pub(super) fn disarm(&self, i: usize, at_ms: u64) -> bool {
        let mut e = self.entries.lock().unwrap();
        match e.get_mut(i) {
            Some(g) if g.record.state == GuardState::Armed => {
                g.record.state = GuardState::Disarmed;
                g.record.ended_ms = Some(at_ms);
                true
            }
            _ => false,
        }
    }

    pub(super) fn name(&self, i: usize) -> String {
        let e = self.entries.lock().unwrap();
        e.get(i).map(|g| g.record.name.clone()).unwrap_or_default()
    }

    /// Run guard `i` if it is still armed; `Ok` when it was not. `by`: who runs it (see
    /// [`GuardRecord::fired_by`]). The record is written afterwards (best effort: the
    /// guard has run either way).
    pub async fn fire(&self, scope: &ActionScope, i: usize, by: &str) -> Result<(), String> {
        let _one = self.firing.lock().await;
        let (undo, timeout, name) = {
            let e = self.entries.lock().unwrap();
            let Some(g) = e.get(i) else {
                return Ok(());
            };
            if g.record.state != GuardState::Armed {
                return Ok(());
            }
            (g.undo.clone(), g.timeout, g.record.name.clone())
        };
        let started = std::time::Instant::now();
        let Some(res) = undo.run(timeout).await else {
            return Ok(());
        };
        let res = res.map_err(|e| scope.redactor.redact(&e));
        {
            let mut e = self.entries.lock().unwrap();
            let g = &mut e[i];
            g.record.state = if res.is_ok() {
                GuardState::Fired
            } else {
                GuardState::Failed
            };
            g.record.ended_ms = Some(scope.elapsed_ms());
            g.record.fired_by = Some(by.to_string());
            g.record.result = Some(match &res {
                Ok(how) => how.clone(),
                Err(e) => e.clone(),
            });
        }
        let audited = res
            .clone()
            .map(|_| ())
            .map_err(|e| crate::wit::WitError::Remote(remote(&e)));
        scope.audit("runtime.guard.fire", &name, by, started, &audited, 0);
        match &res {
            Ok(how) => tracing::info!(guard = %name, by, result = %how, "guard ran"),
            Err(e) => tracing::error!(guard = %name, by, error = %e, "guard failed"),
        }
        scope.persist().await;
        res.map(|_| ())
            .map_err(|e| format!("guard {name:?} failed: {e}"))
    }

    /// Run every armed guard, last registered first. The failures, each naming its guard.
    pub async fn fire_all(&self, scope: &ActionScope, by: &str) -> Vec<String> {
        let n = self.entries.lock().unwrap().len();
        let mut failed = Vec::new();
        for i in (0..n).rev() {
            if let Err(e) = self.fire(scope, i, by).await {
                failed.push(e);
            }
        }
        failed
    }

    /// Run what is still armed, then let go of the backends (the action has ended).
    pub async fn settle(&self, scope: &ActionScope, by: &str) -> Vec<String> {
        let failed = self.fire_all(scope, by).await;
        let _one = self.firing.lock().await;
        for e in self.entries.lock().unwrap().iter_mut() {
            e.undo.release();
        }
        failed
    }
}

fn remote(message: &str) -> crate::wit::RemoteError {
    crate::wit::RemoteError {
        system: "guard".into(),
        code: None,
        message: message.to_string(),
        retryable: false,
    }
}

/// Run a guard's command to its end: `Ok` on exit 0, else what went wrong (the exit and
/// the end of stderr). Its stdout is read and dropped.
pub async fn run_command(
    backend: &dyn ExecBackend,
    spec: SpawnSpec,
    timeout: Duration,
) -> Result<(), String> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut proc = backend.spawn(spec).await.map_err(|e| {
        format!(
            "`{program}` could not start: {}",
            crate::cap::error_text(&e)
        )
    })?;
    let drain = proc.take_stdout().map(|mut r| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8 << 10];
            while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
        })
    });
    let exit = match tokio::time::timeout(timeout, proc.wait()).await {
        Ok(r) => r.map_err(|e| format!("`{program}`: {}", crate::cap::error_text(&e)))?,
        Err(_) => {
            proc.kill();
            return Err(format!(
                "`{program}` did not end within {}s; it was killed",
                timeout.as_secs()
            ));
        }
    };
    if let Some(d) = drain {
        d.abort();
    }
    match (exit.code, exit.signal) {
        (Some(0), _) => Ok(()),
        (code, signal) => {
            let stderr = String::from_utf8_lossy(&exit.stderr);
            let stderr = clip(stderr.trim(), 1024).replace('\n', " ");
            let how = match (code, signal) {
                (Some(c), _) => format!("exited {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "ended without a status".into(),
            };
            Err(format!("`{program}` {how}: {stderr}"))
        }
    }
}

/// What a recorded guard runs: exactly the command its runner checked and recorded.
pub fn recorded_spec(g: &GuardRecord) -> SpawnSpec {
    SpawnSpec {
        workload: g.workload.clone(),
        container: g.container.clone(),
        argv: g.command.clone(),
        plugin_argv: g.command.clone(),
        env: g.env.clone().into_iter().collect(),
        secret_env: vec![],
        stdin: false,
        stderr_tail: 8 << 10,
    }
}

/// Run the guards a dead runner left armed, last registered first, each with `run` (which
/// runs it, or says why it cannot), marking each `recovery`'s. A sentence for the
/// ActionSet's error: empty when none was armed.
pub async fn fire_recorded<F, Fut>(guards: &mut [GuardRecord], mut run: F) -> String
where
    F: FnMut(GuardRecord) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let mut outcomes = Vec::new();
    for g in guards.iter_mut().rev() {
        if g.state != GuardState::Armed {
            continue;
        }
        let res = run(g.clone()).await;
        g.fired_by = Some("recovery".into());
        match res {
            Ok(how) => {
                g.state = GuardState::Fired;
                g.result = Some(how);
                tracing::warn!(guard = %g.name, "ran a guard a lost runner left armed");
                outcomes.push(format!("{} (ok)", g.name));
            }
            Err(e) => {
                g.state = GuardState::Failed;
                tracing::error!(guard = %g.name, error = %e, "a guard a lost runner left armed did not run");
                outcomes.push(format!(
                    "{} FAILED: {e}; undo it by hand: `{}`",
                    g.name,
                    g.undo_text()
                ));
                g.result = Some(e);
            }
        }
    }
    if outcomes.is_empty() {
        return String::new();
    }
    format!(
        "; the guards it left armed were run: {}",
        outcomes.join(", ")
    )
}
