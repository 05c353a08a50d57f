//! Guards left armed by a runner that died (SIGKILL, OOM, a reboot): the next coffer
//! command runs them before it records the action Failed, so a filesystem frozen or a lock
//! taken by the dead run does not stay that way.

use super::Coffer;
use crate::cap::exec::{ExecBackend, LocalExec};
use crate::cap::runtime::{GUARD_TIMEOUT, fire_recorded, recorded_spec, run_command};
use crate::model::{ActionSet, GuardRecord};

impl Coffer {
    /// Run `a`'s armed guards as its runner would have. The guards as they ended, and a
    /// sentence for the ActionSet's error (empty when none was armed).
    pub(super) async fn fire_orphaned_guards(&self, a: &ActionSet) -> (Vec<GuardRecord>, String) {
        let mut guards = a.status.guards.clone();
        // Exactly where the runner ran them: the Workload's own process environment.
        let backend = self.workload(&a.spec.workload).map(|w| {
            LocalExec::new(
                w.name().to_string(),
                w.spec.env.clone(),
                w.spec.volumes.clone(),
            )
        });
        let backend = &backend;
        let note = fire_recorded(&mut guards, |g| async move {
            match backend {
                Ok(b) => run_command(b as &dyn ExecBackend, recorded_spec(&g), GUARD_TIMEOUT).await,
                Err(e) => Err(format!("its workload cannot be read: {e:#}")),
            }
        })
        .await;
        (guards, note)
    }
}
