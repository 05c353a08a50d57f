//! Guards left armed by a runner that died (SIGKILL, OOM, a reboot): the next coffer
//! command runs them before it records the action Failed, so a filesystem frozen, a lock
//! taken or a temporary cloud instance made by the dead run does not stay that way.

use super::Coffer;
use crate::cap::exec::{ExecBackend, LocalExec};
use crate::cap::runtime::{GUARD_TIMEOUT, fire_recorded, recorded_spec, run_command, send_request};
use crate::model::{ActionSet, GuardRecord, Kind};

impl Coffer {
    /// Run `a`'s armed guards as its runner would have. The guards as they ended, and a
    /// sentence for the ActionSet's error (empty when none was armed).
    pub(super) async fn fire_orphaned_guards(&self, a: &ActionSet) -> (Vec<GuardRecord>, String) {
        let mut guards = a.status.guards.clone();
        // Exactly where the runner ran them: the Workload's own process environment.
        let backend = self
            .workload(&a.spec.workload)
            .and_then(|w| LocalExec::for_workload(&w).map_err(|e| anyhow::anyhow!(e)));
        // The Signers request guards send with, with their keys as they are now.
        let names: Vec<&str> = guards
            .iter()
            .filter_map(|g| g.request.as_ref().map(|r| r.signer.as_str()))
            .collect();
        let signers = (!names.is_empty()).then(|| {
            crate::cap::signed_http::named(
                &names,
                "which a guard of this action sends its request with",
                |n| self.catalog.get(Kind::Signer, n),
                &self.credentials,
            )
        });
        let (backend, signers) = (&backend, &signers);
        let note = fire_recorded(&mut guards, |g| async move {
            if let Some(r) = &g.request {
                return match signers {
                    Some(Ok(s)) => send_request(s, r, GUARD_TIMEOUT).await,
                    Some(Err(e)) => Err(format!("{e:#}")),
                    None => unreachable!("a request guard names its Signer"),
                };
            }
            match backend {
                Ok(b) => run_command(b as &dyn ExecBackend, recorded_spec(&g), GUARD_TIMEOUT)
                    .await
                    .map(|()| "exit 0".into()),
                Err(e) => Err(format!("its workload cannot be read: {e:#}")),
            }
        })
        .await;
        (guards, note)
    }
}
