//! ActionSets whose process died (killed, crashed, machine rebooted) are never left
//! "Running": the next coffer marks them Failed and removes a backup's partial objects.
//! Liveness is judged where it can be: by /proc in the runner's own PID namespace, else by
//! its heartbeat; the settling write is compare-and-set on the runner's owner token, so a
//! runner that is alive after all keeps its action. Old finished ActionSets are pruned.

use super::cleanup::{self, Cleanup};
use super::{Coffer, owner};
use crate::catalog::{ActionSetQuery, Retention};
use crate::model::{ActionSet, Phase, now_rfc3339};
use crate::storage::Location;
use anyhow::Result;

/// How many later coffer commands retry a failed backup's cleanup before giving up (with a
/// note saying how to do it by hand): a Profile whose credentials are wrong never gets better.
const MAX_CLEANUP_ATTEMPTS: u32 = 5;

impl Coffer {
    pub(super) async fn recover_stale(&self) -> Result<()> {
        let sets = self.catalog.action_sets(ActionSetQuery::States(&[
            "Running",
            "Pending",
            "CleanupPending",
        ]))?;
        for a in sets {
            if a.status.phase == Phase::Failed && a.status.cleanup_pending {
                self.retry_cleanup(&a).await?;
                continue;
            }
            let heartbeat = self.catalog.heartbeat_age(a.name())?;
            let alive = a
                .status
                .owner
                .as_ref()
                .is_some_and(|o| owner::is_alive(o, heartbeat));
            if alive {
                continue;
            }
            self.settle_lost(&a).await?;
        }
        let retention = match std::env::var("COFFER_ACTIONSET_RETENTION") {
            Ok(s) => Retention::parse(&s)?,
            Err(_) => Retention::default(),
        };
        let pruned = self.catalog.prune_action_sets(retention)?;
        if pruned > 0 {
            tracing::debug!(pruned, "removed finished ActionSets past their retention");
        }
        Ok(())
    }

    /// Mark an ActionSet whose runner is gone Failed, removing a backup's partial objects.
    async fn settle_lost(&self, a: &ActionSet) -> Result<()> {
        let token = a.status.owner.as_ref().map(|o| o.token.clone());
        let token = token.filter(|t| !t.is_empty());
        let pid = a.status.owner.as_ref().map_or(0, |o| o.pid);
        let mut pending = false;
        let mut why = format!(
            "the coffer process (pid {pid}) running this action exited before it finished; nothing was recorded as a restore point"
        );
        // Claim it first: if the runner wrote since we read it, it is alive and keeps it.
        let claimed = self.update(a.name(), token.as_deref(), |x| {
            x.status.owner = None;
        });
        if let Err(e) = claimed {
            tracing::debug!(actionset = %a.name(), error = %e, "the ActionSet changed hands; leaving it");
            return Ok(());
        }
        // What the dead run quiesced runs again first.
        let (guards, guard_note) = self.fire_orphaned_guards(a).await;
        why.push_str(&guard_note);
        if a.spec.kind().removes_objects_on_failure()
            && let Some(prefix) = &a.status.prefix
        {
            let location = self
                .profile(&a.spec.profile)
                .and_then(|(p, _)| Location::from_profile(&p, &self.credentials));
            let c = cleanup::remove_partial_backup(location, prefix).await;
            pending = c.pending();
            why.push_str(&c.note(prefix, "the next coffer command tries again"));
        }
        tracing::warn!(actionset = %a.name(), "{why}");
        self.update(a.name(), None, |a| {
            a.status.phase = Phase::Failed;
            a.status.end_time = Some(now_rfc3339());
            a.status.error = Some(why.clone());
            a.status.cleanup_pending = pending;
            a.status.guards = guards.clone();
        })
    }

    /// Try again to remove what a failed backup left (objects, open multipart uploads).
    /// Still failing is a warning, not an error: this runs before every command.
    async fn retry_cleanup(&self, a: &ActionSet) -> Result<()> {
        let Some(prefix) = &a.status.prefix else {
            return Ok(());
        };
        let location = self
            .profile(&a.spec.profile)
            .and_then(|(p, _)| Location::from_profile(&p, &self.credentials));
        match cleanup::remove_partial_backup(location, prefix).await {
            Cleanup::Removed(_) => {
                self.update(a.name(), None, |a| a.status.cleanup_pending = false)
            }
            Cleanup::Pending(e) => {
                let attempts = a.status.cleanup_attempts + 1;
                if attempts >= MAX_CLEANUP_ATTEMPTS {
                    let note = format!(
                        "; gave up removing what it left under {prefix} after {attempts} attempts ({e}); remove it with `coffer location rm -r --profile {} {prefix}`",
                        a.spec.profile
                    );
                    tracing::warn!(actionset = %a.name(), "{}", note.trim_start_matches("; "));
                    return self.update(a.name(), None, |a| {
                        a.status.cleanup_pending = false;
                        a.status.cleanup_attempts = attempts;
                        if let Some(err) = &mut a.status.error {
                            err.push_str(&note);
                        }
                    });
                }
                tracing::warn!(actionset = %a.name(), prefix = %prefix, attempt = attempts, error = %e, "what the failed backup left could not be removed yet");
                self.update(a.name(), None, |a| a.status.cleanup_attempts = attempts)
            }
        }
    }
}
