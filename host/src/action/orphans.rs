//! Guards left armed by a runner that died (SIGKILL, OOM, a reboot): the next coffer
//! command runs them before it records the action Failed, so a filesystem frozen or a lock
//! taken by the dead run does not stay that way.

use super::Coffer;
use crate::cap::exec::{ExecBackend, LocalExec, SpawnSpec};
use crate::cap::runtime::{GUARD_TIMEOUT, run_command};
use crate::model::{ActionSet, GuardRecord, GuardState};

impl Coffer {
    /// Run `a`'s armed guards, last registered first, as its runner would have. The guards
    /// as they ended, and a sentence for the ActionSet's error (empty when none was armed).
    pub(super) async fn fire_orphaned_guards(&self, a: &ActionSet) -> (Vec<GuardRecord>, String) {
        let mut guards = a.status.guards.clone();
        if !guards.iter().any(|g| g.state == GuardState::Armed) {
            return (guards, String::new());
        }
        let backend = match self.workload(&a.spec.workload) {
            Ok(w) => Ok(LocalExec::new(
                w.name().to_string(),
                w.spec.env.clone(),
                w.spec.volumes.clone(),
            )),
            Err(e) => Err(format!("its workload cannot be read: {e:#}")),
        };
        let mut outcomes = Vec::new();
        for g in guards.iter_mut().rev() {
            if g.state != GuardState::Armed {
                continue;
            }
            let res = match &backend {
                Ok(b) => run_command(b as &dyn ExecBackend, spec(g), GUARD_TIMEOUT).await,
                Err(e) => Err(e.clone()),
            };
            g.fired_by = Some("recovery".into());
            match &res {
                Ok(()) => {
                    g.state = GuardState::Fired;
                    g.result = Some("exit 0".into());
                    tracing::warn!(actionset = %a.name(), guard = %g.name, "ran the guard the dead run left armed");
                    outcomes.push(format!("{} (ok)", g.name));
                }
                Err(e) => {
                    g.state = GuardState::Failed;
                    g.result = Some(e.clone());
                    tracing::error!(actionset = %a.name(), guard = %g.name, error = %e, "the guard the dead run left armed failed");
                    outcomes.push(format!(
                        "{} FAILED: {e}; undo it by hand: `{}`",
                        g.name,
                        g.command.join(" ")
                    ));
                }
            }
        }
        let note = format!(
            "; the guards it left armed were run: {}",
            outcomes.join(", ")
        );
        (guards, note)
    }
}

/// What a recorded guard runs: exactly the command its runner checked and recorded.
fn spec(g: &GuardRecord) -> SpawnSpec {
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
