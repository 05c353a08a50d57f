//! An action's record on a cluster: its ActionSet resource's status and, for a backup, its
//! RestorePoint resource. The engine writes here directly (no local mirror). Every status
//! write is a merge patch that names the resourceVersion it was computed against: if the
//! object changed meanwhile, the write is refused, the object re-read, and retried only
//! while it is still this runner's and Running (a user setting spec.cancel is not a reason
//! to stop recording; another instance settling the action as lost is).

use super::Error;
use crate::action::record::{ActionRecord, Change};
use crate::catalog::NotOurs;
use crate::model::{
    ActionSet, ActionSetResource, ActionSetStatus, Phase, RestorePoint, RestorePointResource,
    now_rfc3339,
};
use anyhow::{Context, Result, anyhow};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::Mutex;

pub struct ClusterRecord {
    sets: Api<ActionSetResource>,
    restore_points: Api<RestorePointResource>,
    name: String,
    /// `status.runner`: this process.
    runner: String,
    state: Mutex<State>,
    /// Told why, when a write finds the action asked to stop (spec.cancel, a deletion): the
    /// runner learns it from its own writes, without watching.
    stop: Option<tokio::sync::watch::Sender<Option<String>>>,
}

struct State {
    /// The ActionSet as this run last recorded it.
    set: ActionSet,
    /// The status JSON last written: fields it had that a new status lacks are cleared.
    written: Value,
    /// The resourceVersion the next write is conditional on.
    version: Option<String>,
}

impl ClusterRecord {
    /// The record of ActionSet `claimed` (already claimed by `runner`).
    pub fn new(
        sets: Api<ActionSetResource>,
        restore_points: Api<RestorePointResource>,
        claimed: &ActionSetResource,
        runner: &str,
        stop: Option<tokio::sync::watch::Sender<Option<String>>>,
    ) -> ClusterRecord {
        let name = claimed.metadata.name.clone().unwrap_or_default();
        ClusterRecord {
            sets,
            restore_points,
            runner: runner.to_string(),
            state: Mutex::new(State {
                set: super::kinds::action_set(claimed),
                written: Value::Null,
                version: claimed.metadata.resource_version.clone(),
            }),
            name,
            stop,
        }
    }

    /// Pass on a stop request the resource carries.
    fn notice_stop(&self, o: &ActionSetResource) {
        let why = if o.metadata.deletion_timestamp.is_some() {
            "cancelled: the ActionSet was deleted"
        } else if o.spec.cancel {
            "cancelled (spec.cancel)"
        } else {
            return;
        };
        if let Some(tx) = &self.stop
            && tx.borrow().is_none()
        {
            let _ = tx.send(Some(why.to_string()));
        }
    }

    /// The status as it goes on the resource: no local owner, this runner, a fresh
    /// heartbeat (the leader judges a runner by whether it keeps changing).
    fn status_json(&self, s: &ActionSetStatus) -> Value {
        let mut s = s.clone();
        s.owner = None;
        s.runner = Some(self.runner.clone());
        s.heartbeat = Some(now_rfc3339());
        serde_json::to_value(s).unwrap_or_default()
    }

    /// Write `state.set`'s status, conditional on the version last seen.
    async fn write(&self, state: &mut State) -> Result<()> {
        let mut status = self.status_json(&state.set.status);
        if let (Value::Object(new), Value::Object(old)) = (&mut status, &state.written) {
            for k in old.keys() {
                if !new.contains_key(k) {
                    new.insert(k.clone(), Value::Null);
                }
            }
        }
        let mut transient = None;
        for attempt in 0..6u32 {
            let patch = json!({
                "metadata": {"resourceVersion": state.version},
                "status": status,
            });
            match self
                .sets
                .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(o) => {
                    state.version = o.metadata.resource_version.clone();
                    state.written = status;
                    self.notice_stop(&o);
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Changed since: still ours? Then write again on top of it.
                    let now = self.sets.get(&self.name).await.map_err(Error::Kube)?;
                    let st = now.status.clone().unwrap_or_default();
                    if st.runner.as_deref() != Some(self.runner.as_str())
                        || st.phase != Phase::Running
                    {
                        return Err(NotOurs(self.name.clone()).into());
                    }
                    state.version = now.metadata.resource_version.clone();
                }
                Err(e) => {
                    transient = Some(e);
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        Err(anyhow!(
            "recording the status of ActionSet {}: {}",
            self.name,
            transient.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    /// Create the RestorePoint resource; one already there is fine only if it is this
    /// backup's (an earlier attempt made it), never someone else's.
    async fn create_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        let resource = super::kinds::restore_point_resource(rp);
        let name = rp.name();
        let mut last = None;
        for attempt in 0..5u32 {
            match self
                .restore_points
                .create(&PostParams::default(), &resource)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let existing = self
                        .restore_points
                        .get(name)
                        .await
                        .with_context(|| format!("reading RestorePoint {name}"))?;
                    return if existing.spec == rp.spec {
                        Ok(())
                    } else {
                        Err(anyhow!(
                            "RestorePoint {name} already exists and is not this backup's; the backup is not recorded"
                        ))
                    };
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        Err(anyhow!(
            "creating RestorePoint {name}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }
}

#[async_trait::async_trait]
impl ActionRecord for ClusterRecord {
    async fn started(&self, set: &ActionSet) -> Result<()> {
        let mut state = self.state.lock().await;
        state.set.status = set.status.clone();
        self.write(&mut state).await
    }

    async fn update(&self, change: Change<'_>) -> Result<()> {
        let mut state = self.state.lock().await;
        change(&mut state.set);
        self.write(&mut state).await
    }

    async fn owned(&self) -> Result<bool> {
        let now = self.sets.get(&self.name).await.map_err(Error::Kube)?;
        let st = now.status.unwrap_or_default();
        Ok(st.runner.as_deref() == Some(self.runner.as_str()) && st.phase == Phase::Running)
    }

    async fn commit_backup(&self, rp: &RestorePoint, set: &ActionSet) -> Result<()> {
        // The RestorePoint resource before the ActionSet says Completed: a reader that sees
        // Completed finds the restore point.
        self.create_restore_point(rp).await?;
        let mut state = self.state.lock().await;
        state.set.status = set.status.clone();
        self.write(&mut state).await
    }

    async fn remove_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        match self
            .restore_points
            .delete(rp.name(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting RestorePoint {}", rp.name())),
        }
    }

    async fn current(&self) -> Result<ActionSet> {
        Ok(self.state.lock().await.set.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::mock::{self, Seen};
    use std::sync::atomic::{AtomicU32, Ordering};

    const SET: &str = "/apis/coffer.dev/v1alpha1/namespaces/db/actionsets/b1";
    const RPS: &str = "/apis/coffer.dev/v1alpha1/namespaces/db/restorepoints";

    fn spec() -> Value {
        json!({"action": "backup", "workload": "statefulset/pg"})
    }

    fn running(runner: &str) -> Value {
        json!({"phase": "Running", "runner": runner})
    }

    /// A record of ActionSet `b1`, claimed by `me` at resourceVersion 1.
    fn record(
        answer: mock::Answer,
    ) -> (
        ClusterRecord,
        mock::Log,
        tokio::sync::watch::Receiver<Option<String>>,
    ) {
        let (client, log) = mock::client(answer);
        let claimed: ActionSetResource =
            serde_json::from_value(mock::action_set("b1", "1", spec(), running("me"))).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(None);
        let r = ClusterRecord::new(
            Api::namespaced(client.clone(), "db"),
            Api::namespaced(client, "db"),
            &claimed,
            "me",
            Some(tx),
        );
        (r, log, rx)
    }

    fn patches(log: &std::sync::Mutex<Vec<Seen>>) -> Vec<Value> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "PATCH")
            .map(|s| s.body.clone())
            .collect()
    }

    fn set_bytes(n: u64) -> impl Fn(&mut ActionSet) + Send + Sync {
        move |a: &mut ActionSet| a.status.bytes = n
    }

    #[tokio::test]
    async fn every_write_is_conditional_on_the_version_last_seen() {
        let version = AtomicU32::new(1);
        let (r, log, _) = record(Box::new(move |s| {
            assert_eq!(s.path, format!("{SET}/status"));
            let v = version.fetch_add(1, Ordering::SeqCst) + 1;
            (
                200,
                mock::action_set("b1", &v.to_string(), spec(), s.body["status"].clone()),
            )
        }));
        r.update(&set_bytes(10)).await.unwrap();
        r.update(&set_bytes(20)).await.unwrap();
        let p = patches(&log);
        assert_eq!(p[0]["metadata"]["resourceVersion"], "1");
        assert_eq!(p[1]["metadata"]["resourceVersion"], "2");
        assert_eq!(p[1]["status"]["bytes"], 20);
        assert_eq!(p[1]["status"]["runner"], "me");
    }

    #[tokio::test]
    async fn a_conflict_while_still_ours_writes_again_on_top_of_the_new_version() {
        let (r, log, _) = record(Box::new(|s| match (s.method.as_str(), s.body.clone()) {
            ("GET", _) => (200, mock::action_set("b1", "5", spec(), running("me"))),
            ("PATCH", b) if b["metadata"]["resourceVersion"] == "1" => {
                (409, mock::status(409, "Conflict"))
            }
            ("PATCH", b) => (
                200,
                mock::action_set("b1", "6", spec(), b["status"].clone()),
            ),
            _ => (404, mock::status(404, "NotFound")),
        }));
        r.update(&set_bytes(7)).await.unwrap();
        let p = patches(&log);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1]["metadata"]["resourceVersion"], "5");
        assert_eq!(p[1]["status"]["bytes"], 7);
    }

    #[tokio::test]
    async fn a_conflict_after_another_instance_settled_it_is_not_ours_and_writes_nothing() {
        let (r, log, _) = record(Box::new(|s| match s.method.as_str() {
            "GET" => (
                200,
                mock::action_set(
                    "b1",
                    "5",
                    spec(),
                    json!({"phase": "Failed", "runner": "me",
                    "error": "its runner me was lost"}),
                ),
            ),
            _ => (409, mock::status(409, "Conflict")),
        }));
        let e = r.update(&set_bytes(7)).await.unwrap_err();
        assert!(e.downcast_ref::<NotOurs>().is_some(), "{e:#}");
        assert_eq!(
            patches(&log).len(),
            1,
            "it wrote again over the settled status"
        );

        // Taken over by another runner while Running: not ours either.
        let (r, _, _) = record(Box::new(|s| match s.method.as_str() {
            "GET" => (200, mock::action_set("b1", "5", spec(), running("other"))),
            _ => (409, mock::status(409, "Conflict")),
        }));
        let e = r.update(&set_bytes(7)).await.unwrap_err();
        assert!(e.downcast_ref::<NotOurs>().is_some(), "{e:#}");
    }

    #[tokio::test]
    async fn a_field_the_new_status_lacks_is_cleared() {
        let (r, log, _) = record(Box::new(|s| {
            (
                200,
                mock::action_set("b1", "2", spec(), s.body["status"].clone()),
            )
        }));
        r.update(&|a: &mut ActionSet| a.status.checkpoint = Some("wal-7".into()))
            .await
            .unwrap();
        r.update(&|a: &mut ActionSet| a.status.checkpoint = None)
            .await
            .unwrap();
        let p = patches(&log);
        assert_eq!(p[0]["status"]["checkpoint"], "wal-7");
        assert!(
            p[1]["status"]
                .as_object()
                .unwrap()
                .contains_key("checkpoint")
        );
        assert_eq!(p[1]["status"]["checkpoint"], Value::Null);
    }

    #[tokio::test]
    async fn a_write_that_finds_the_set_cancelled_or_deleted_tells_the_runner() {
        let (r, _, rx) = record(Box::new(|s| {
            let mut spec = spec();
            spec["cancel"] = json!(true);
            (
                200,
                mock::action_set("b1", "2", spec, s.body["status"].clone()),
            )
        }));
        r.update(&set_bytes(1)).await.unwrap();
        assert_eq!(rx.borrow().as_deref(), Some("cancelled (spec.cancel)"));

        let (r, _, rx) = record(Box::new(|s| {
            let mut o = mock::action_set("b1", "2", spec(), s.body["status"].clone());
            o["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:00:00Z");
            (200, o)
        }));
        r.update(&set_bytes(1)).await.unwrap();
        assert_eq!(
            rx.borrow().as_deref(),
            Some("cancelled: the ActionSet was deleted")
        );
    }

    fn restore_point(action_set: &str) -> RestorePoint {
        serde_json::from_value(json!({
            "apiVersion": "coffer.dev/v1alpha1", "kind": "RestorePoint",
            "metadata": {"name": "rp1"},
            "spec": {"workload": "statefulset/pg", "blueprint": "pg", "profile": "default",
                     "plugin": {"name": "postgres", "version": "0.1.0", "sha256": "00"},
                     "prefix": "db/pg/rp1", "manifestKey": "db/pg/rp1/manifest.json",
                     "actionSet": action_set, "startTime": "t0", "endTime": "t1",
                     "size": 1, "storedSize": 1, "artifacts": [], "objects": []}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_restore_point_name_held_by_another_backup_leaves_the_set_uncompleted() {
        let theirs = serde_json::to_value(crate::k8s::kinds::restore_point_resource(
            &restore_point("someone-else"),
        ))
        .unwrap();
        let (r, log, _) = record(Box::new(move |s| {
            match (s.method.as_str(), s.path.as_str()) {
                ("POST", RPS) => (409, mock::status(409, "AlreadyExists")),
                ("GET", p) if p == format!("{RPS}/rp1") => (200, theirs.clone()),
                _ => (
                    200,
                    mock::action_set("b1", "2", spec(), s.body["status"].clone()),
                ),
            }
        }));
        let mine = restore_point("b1");
        let mut done = r.current().await.unwrap();
        done.status.phase = Phase::Completed;
        let e = r.commit_backup(&mine, &done).await.unwrap_err();
        assert!(e.to_string().contains("not this backup's"), "{e:#}");
        assert!(
            patches(&log).is_empty(),
            "the ActionSet was marked Completed"
        );
    }

    #[tokio::test]
    async fn an_earlier_attempts_own_restore_point_counts_as_created() {
        let mine = restore_point("b1");
        let same = serde_json::to_value(crate::k8s::kinds::restore_point_resource(&mine)).unwrap();
        let (r, log, _) = record(Box::new(move |s| {
            match (s.method.as_str(), s.path.as_str()) {
                ("POST", RPS) => (409, mock::status(409, "AlreadyExists")),
                ("GET", p) if p == format!("{RPS}/rp1") => (200, same.clone()),
                _ => (
                    200,
                    mock::action_set("b1", "2", spec(), s.body["status"].clone()),
                ),
            }
        }));
        let mut done = r.current().await.unwrap();
        done.status.phase = Phase::Completed;
        r.commit_backup(&mine, &done).await.unwrap();
        assert_eq!(patches(&log)[0]["status"]["phase"], "Completed");
    }
}
