//! How a running action's scope reaches its record: what the capability calls recorded,
//! copied onto the ActionSet's status, written at once when a guard or the quiesce window
//! changes, and (on Kubernetes) each guard sealed before it is written.

use super::prepare::ClusterSubject;
use super::record::ActionRecord;
use crate::cap::ActionScope;
use crate::model::ActionSetStatus;
use crate::storage::manifest::ManifestKey;
use std::sync::Arc;

/// What the capability calls recorded (bytes moved, audit, logs, checkpoint, guards, the
/// quiesce window), onto an ActionSet status.
pub(super) fn copy_scope(scope: &ActionScope, s: &mut ActionSetStatus) {
    s.bytes = scope
        .progress
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    {
        let r = scope.records.lock().unwrap();
        s.audit = r.audit.clone();
        s.audit_dropped = r.audit_dropped;
        s.logs = r.logs.clone();
        s.logs_dropped = r.logs_dropped;
        s.checkpoint = r.checkpoint.clone();
    }
    s.guards = scope.guards.records();
    s.quiesce = scope.quiesce.window();
}

/// Let the scope write its records (a guard, the quiesce window) to the action's record
/// the moment they change, not only with the next progress write.
pub(super) fn set_persist_hook(scope: &Arc<ActionScope>, record: &Arc<dyn ActionRecord>) {
    let weak = Arc::downgrade(scope);
    let record = record.clone();
    let hook: crate::cap::scope::PersistHook = Arc::new(move || {
        let (weak, record) = (weak.clone(), record.clone());
        Box::pin(async move {
            let Some(scope) = weak.upgrade() else {
                return Ok(());
            };
            record
                .update(&|a: &mut crate::model::ActionSet| copy_scope(&scope, &mut a.status))
                .await
        })
    });
    let _ = scope.persist_hook.set(hook);
}

/// On Kubernetes the ActionSet is the tenant's to write: the guards a new leader will run
/// are only those this coffer sealed (see [`crate::model::GuardRecord::seal`]).
pub(super) fn seal_guards(scope: &ActionScope, key: &ManifestKey, ns: String, c: &ClusterSubject) {
    let key = key.clone();
    let set = c.action_set.clone();
    let sealer: crate::cap::scope::GuardSealer = Arc::new(move |g| {
        let fields = g.seal_fields(&ns, &set);
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        key.tag(crate::model::GUARD_SEAL, &fields)
    });
    let _ = scope.guard_sealer.set(sealer);
}
