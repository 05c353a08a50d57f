//! Running one ActionSet resource, for the daemon and for `coffer backup --local-run`: claim
//! it (compare-and-set on its resourceVersion), prepare it from the cluster (`resolve.rs`),
//! and run it on the same engine as local mode, which records straight into the resource
//! (`record.rs`). A cancel request (spec.cancel, a deletion, the daemon stopping) or the
//! deadline stops it; a stopped backup's partial objects are removed.
//!
//! The ActionSet's status is the durable state machine: Pending (or no status) -> Running
//! (with `runner`) -> Completed | Failed; a Running one whose runner is gone is settled by
//! the next leader (`settle.rs`).

use super::kinds::{ActionSetResource, StatusPatch, patch_status};
use crate::action::{Coffer, PreparedAction};
use crate::model::{ActionSet, Phase, now_rfc3339};
use anyhow::Result;
use kube::Client;
use kube::api::Api;
use std::time::Duration;
use tokio::sync::watch;

pub struct ClusterCtx {
    pub client: Client,
    /// The configuration `client` came from: plugins' kube calls get a client of their own
    /// from it that impersonates a ServiceAccount.
    pub config: kube::Config,
    /// Where Blueprints, Profiles and BlueprintBindings live (the daemon's namespace).
    pub config_ns: String,
    /// This instance, recorded as `status.runner`.
    pub identity: String,
    /// Movers, when this runner may start them (`coffer daemon --mover-image`).
    pub movers: Option<MoverConfig>,
}

/// How the daemon starts movers (`coffer daemon --mover-*`).
#[derive(Debug, Clone)]
pub struct MoverConfig {
    /// The image holding `/coffer` (this binary), copied into each mover pod.
    pub image: String,
    /// Where the mover container runs `coffer` from.
    pub binary: String,
    /// An object at least this large in the subject's last restore point is made by a
    /// mover; 0: every one.
    pub threshold: u64,
}

/// Claim an ActionSet for `runner`: Running, compare-and-set on the resourceVersion of `o`
/// (a 409 means someone else claimed it first: see [`lost_claim`]). The claimed object.
pub async fn claim(
    api: &Api<ActionSetResource>,
    o: &ActionSetResource,
    runner: &str,
) -> Result<ActionSetResource, kube::Error> {
    let name = o.metadata.name.clone().unwrap_or_default();
    let patch = StatusPatch {
        phase: Some(Phase::Running),
        start_time: Some(now_rfc3339()),
        runner: Some(Some(runner.to_string())),
        heartbeat: Some(now_rfc3339()),
        ..Default::default()
    };
    patch_status(api, &name, &patch, o.metadata.resource_version.as_deref()).await
}

/// The claim lost the race (the object changed since it was read).
pub fn lost_claim(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

enum Ended {
    Done(Box<Result<ActionSet>>),
    Stop(String),
}

/// Run a prepared action to its end; a cancel request (`cancel` receives a reason) or the
/// deadline stops it, and a stopped backup's partial objects are removed. The final record.
pub async fn execute(
    coffer: &Coffer,
    p: &PreparedAction,
    mut cancel: watch::Receiver<Option<String>>,
    deadline: Option<Duration>,
) -> Result<ActionSet> {
    let mut run = Box::pin(coffer.run(p));
    let limit = deadline.unwrap_or(Duration::from_secs(100 * 365 * 86400));
    let timer = tokio::time::sleep(limit);
    tokio::pin!(timer);
    let ended = loop {
        tokio::select! {
            r = &mut run => break Ended::Done(Box::new(r)),
            changed = cancel.changed() => {
                let reason = cancel.borrow().clone();
                match (changed, reason) {
                    (_, Some(r)) => break Ended::Stop(r),
                    (Err(_), None) => break Ended::Stop("the coffer daemon is shutting down".into()),
                    _ => {}
                }
            }
            _ = &mut timer => break Ended::Stop(format!(
                "its deadline of {} passed; the action was stopped",
                humantime::format_duration(limit)
            )),
        }
    };
    // Dropping the run kills its processes and cancels its transfers before cleanup.
    drop(run);
    match ended {
        Ended::Done(r) => *r,
        Ended::Stop(why) => coffer.abandon(p, &why).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::mock;
    use serde_json::json;

    #[tokio::test]
    async fn a_claim_is_conditional_on_the_version_read_and_a_conflict_is_a_lost_race() {
        let (client, log) = mock::client(Box::new(|s| {
            if s.body["metadata"]["resourceVersion"] == "3" {
                (409, mock::status(409, "Conflict"))
            } else if s.body["metadata"]["resourceVersion"] == "4" {
                (403, mock::status(403, "Forbidden"))
            } else {
                (
                    200,
                    mock::action_set(
                        "b1",
                        "9",
                        json!({"action": "backup", "workload": "statefulset/pg"}),
                        s.body["status"].clone(),
                    ),
                )
            }
        }));
        let api: Api<ActionSetResource> = Api::namespaced(client, "db");
        let read = |v: &str| -> ActionSetResource {
            serde_json::from_value(mock::action_set(
                "b1",
                v,
                json!({"action": "backup", "workload": "statefulset/pg"}),
                json!({"phase": "Pending"}),
            ))
            .unwrap()
        };
        let claimed = claim(&api, &read("2"), "me").await.unwrap();
        let st = claimed.status.unwrap();
        assert_eq!(
            (st.phase, st.runner.as_deref()),
            (Phase::Running, Some("me"))
        );
        let sent = log.lock().unwrap()[0].clone();
        assert_eq!(sent.method, "PATCH");
        assert!(
            sent.path.ends_with("/actionsets/b1/status"),
            "{}",
            sent.path
        );
        assert_eq!(sent.body["metadata"]["resourceVersion"], "2");

        let e = claim(&api, &read("3"), "me").await.unwrap_err();
        assert!(lost_claim(&e), "{e}");
        let e = claim(&api, &read("4"), "me").await.unwrap_err();
        assert!(!lost_claim(&e));
    }
}
