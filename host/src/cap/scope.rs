//! What every capability call of one action shares: who is acting, the limits, the
//! redactor, cancellation, live progress and the records the calls leave (audit trail,
//! logs, checkpoint, objects written). One per action, shared by its calls (validate, run)
//! and read by the action engine afterwards.

use crate::limits::{
    EffectiveLimits, MAX_AUDIT, MAX_AUDIT_ARGS, MAX_AUDIT_BYTES, MAX_AUDIT_RESULT, MAX_AUDIT_TARGET,
};
use crate::model::{AuditEntry, LogLine, ObjectRecord};
use crate::redact::{Redactor, clip};
use crate::wit::WitError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::task::TaskTracker;

/// Who acts: the names errors and records carry.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub action: String,
    pub blueprint: String,
    pub plugin: String,
    /// The workload the action runs on (exec targets it unless a call names another).
    pub workload: String,
}

pub struct ActionScope {
    pub actor: Actor,
    /// The limits in force (defaults overridden by the Blueprint).
    pub limits: EffectiveLimits,
    pub redactor: Redactor,
    pub started: Instant,
    pub cancelled: AtomicBool,
    pub progress: Progress,
    pub records: Mutex<Records>,
    /// Called with every audit entry as it is recorded (`coffer plugin run`'s live trace).
    pub on_audit: std::sync::OnceLock<AuditHook>,
    /// The transfers the host runs for the plugin: waited for (see [`Self::settle_transfers`])
    /// before the action's outcome is recorded or a failed backup's objects are removed.
    pub transfers: TaskTracker,
    /// Process stdin streams (by resource rep) that want to be told their length before
    /// the first byte: `location.get-into` one of them tells it the object's size.
    pub stdin_lengths: Mutex<std::collections::HashMap<u32, crate::cap::exec::StdinLength>>,
    /// Output streams (by resource rep) whose process a mover may run instead, for
    /// `location.put` of that stream ([`crate::cap::exec::mover`]).
    pub movers: Mutex<std::collections::HashMap<u32, crate::cap::exec::MoverClaim>>,
    /// Commands that undo a quiesce, run on any end of the action (`runtime.add-guard`).
    pub guards: crate::cap::runtime::Guards,
    /// The quiesce window and its watchdog.
    pub quiesce: crate::cap::runtime::Quiesce,
    /// Writes what the scope holds to the action's record at once (set by the action; a
    /// guard is registered only once it is recorded).
    pub persist_hook: std::sync::OnceLock<PersistHook>,
    /// Seals a guard's record (on Kubernetes, where a tenant may write the ActionSet).
    pub guard_sealer: std::sync::OnceLock<GuardSealer>,
}

pub type GuardSealer = Arc<dyn Fn(&crate::model::GuardRecord) -> String + Send + Sync>;

pub type PersistHook =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// How long the end of an action waits for its cancelled transfers to abort.
const SETTLE_TRANSFERS: std::time::Duration = std::time::Duration::from_secs(60);

pub type AuditHook = Arc<dyn Fn(&AuditEntry) + Send + Sync>;

/// Live progress, polled by the CLI's progress bar.
#[derive(Default)]
pub struct Progress {
    /// Bytes moved by transfers (uncompressed).
    pub bytes: Arc<AtomicU64>,
    pub step: Mutex<Option<(String, u64, Option<u64>)>>,
}

impl Progress {
    pub fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }
}

/// What the action leaves on its ActionSet.
#[derive(Default)]
pub struct Records {
    pub audit: Vec<AuditEntry>,
    /// Bytes of the audit entries kept (capped by MAX_AUDIT_BYTES).
    pub audit_bytes: usize,
    pub audit_dropped: u64,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u64,
    pub checkpoint: Option<String>,
    /// Objects written, in order of completion.
    pub objects: Vec<ObjectRecord>,
}

impl ActionScope {
    pub fn new(actor: Actor, limits: EffectiveLimits, redactor: Redactor) -> ActionScope {
        ActionScope {
            actor,
            limits,
            redactor,
            started: Instant::now(),
            cancelled: AtomicBool::new(false),
            progress: Progress::default(),
            records: Mutex::new(Records::default()),
            on_audit: Default::default(),
            transfers: TaskTracker::new(),
            stdin_lengths: Default::default(),
            movers: Default::default(),
            guards: Default::default(),
            quiesce: Default::default(),
            persist_hook: Default::default(),
            guard_sealer: Default::default(),
        }
    }

    /// A scope for calls that act on nothing (describe) and for benchmarks.
    pub fn detached(plugin: &str) -> ActionScope {
        ActionScope::new(
            Actor {
                action: "describe".into(),
                plugin: plugin.into(),
                ..Default::default()
            },
            EffectiveLimits::resolve(&Default::default(), "describe")
                .expect("default limits are valid"),
            Redactor::new(),
        )
    }

    /// Wait until every transfer has ended. Once the plugin's Store is gone its transfers
    /// are cancelled; an upload then aborts (its staging files and parts removed) before its
    /// task ends, so nothing writes under the action's prefix after this returns. Bounded: a
    /// store that hangs is reported, not waited on forever.
    pub async fn settle_transfers(&self) {
        self.transfers.close();
        if tokio::time::timeout(SETTLE_TRANSFERS, self.transfers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                transfers = self.transfers.len(),
                "transfers still running {}s after the action ended",
                SETTLE_TRANSFERS.as_secs()
            );
        }
    }

    /// The action has ended: close the quiesce window and run every guard still armed
    /// (last registered first), each at most once. The failures, each naming its guard.
    pub async fn settle_guards(&self) -> Vec<String> {
        self.quiesce.close();
        self.guards.settle(self, "end").await
    }

    /// Write the records to the action's record now (without a hook, as in the test
    /// harness, there is nothing to write to). A failure is logged and returned.
    pub async fn try_persist(&self) -> anyhow::Result<()> {
        let Some(hook) = self.persist_hook.get() else {
            return Ok(());
        };
        let r = hook().await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "could not write the action's record");
        }
        r
    }

    /// [`Self::try_persist`] where a failure changes nothing but the log.
    pub async fn persist(&self) {
        let _ = self.try_persist().await;
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Record one capability call on the audit trail (no secret values: callers pass
    /// summaries, and the result text is redacted here).
    pub fn audit<T>(
        &self,
        capability: &str,
        target: &str,
        args: &str,
        started: Instant,
        result: &Result<T, WitError>,
        bytes: u64,
    ) {
        // Every field may carry what the plugin passed: clipped, then redacted.
        let keep = |s: &str, max: usize| self.redactor.redact(clip(s, max));
        let result = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => keep(&super::error_text(e), MAX_AUDIT_RESULT),
        };
        let entry = AuditEntry {
            at_ms: started.duration_since(self.started).as_millis() as u64,
            capability: capability.to_string(),
            target: keep(target, MAX_AUDIT_TARGET),
            args: keep(args, MAX_AUDIT_ARGS),
            result,
            duration_ms: started.elapsed().as_millis() as u64,
            bytes,
        };
        tracing::debug!(capability, target, result = %entry.result, duration_ms = entry.duration_ms, "capability call");
        if let Some(hook) = self.on_audit.get() {
            hook(&entry);
        }
        let size = entry.target.len() + entry.args.len() + entry.result.len() + 64;
        let mut r = self.records.lock().unwrap();
        if r.audit.len() < MAX_AUDIT && r.audit_bytes + size <= MAX_AUDIT_BYTES {
            r.audit_bytes += size;
            r.audit.push(entry);
        } else {
            r.audit_dropped += 1;
        }
    }

    /// True (and counted as dropped) once the plugin has logged as much as is recorded.
    pub fn logs_full(&self) -> bool {
        let mut r = self.records.lock().unwrap();
        if r.logs.len() >= self.limits.log_lines {
            if r.logs_dropped == 0 {
                tracing::warn!(
                    plugin = %self.actor.plugin,
                    "the plugin logged {} lines (spec.limits.logLines); further lines are dropped",
                    self.limits.log_lines
                );
            }
            r.logs_dropped += 1;
            return true;
        }
        false
    }

    pub fn record_log(&self, line: LogLine) {
        let mut r = self.records.lock().unwrap();
        if r.logs.len() < self.limits.log_lines {
            r.logs.push(line);
        } else {
            r.logs_dropped += 1;
        }
    }
}
