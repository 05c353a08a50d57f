//! PGO mode: the subject is a Crunchy `PostgresCluster`, and PGO runs pgBackRest. coffer
//! asks PGO through the cluster's own API, reads pgBackRest's `info` in the repo host (where
//! exec goes for this kind), and records exactly the set PGO made.
//!
//! backup  = `spec.backups.pgbackrest.manual` must be set; annotate
//!           `…/pgbackrest-backup=<unique id>`; wait until `status.pgbackrest.manualBackup`
//!           has that id AND is finished (a stale status of an earlier backup never counts);
//!           the new set is the one `info` lists now and did not before.
//! restore = patch `spec.backups.pgbackrest.restore {enabled: true, repoName, options:
//!           [--set=LABEL, --type=immediate | PITR]}` and annotate `…/pgbackrest-restore=<id>`
//!           in one request; wait on `status.pgbackrest.restore` with that id; set `enabled:
//!           false` again whatever happened (PGO would otherwise run the restore again on
//!           the next annotation).
//! delete  = keep the set unless `expire: true` (PGO's retention expires it); with it,
//!           `expire --set` in the repo host.

use crate::{Record, RestoreParams, info};
use coffer_plugin_sdk::{self as sdk, ActionOutput, ActionRequest, Error, kube, log, types};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const KIND: &str = "PostgresCluster";
const BACKUP_ANNOTATION: &str = "postgres-operator.crunchydata.com/pgbackrest-backup";
const RESTORE_ANNOTATION: &str = "postgres-operator.crunchydata.com/pgbackrest-restore";
/// The prefix of the ids coffer annotates with: a restore left enabled under one of these is
/// coffer's to switch off.
const ID_PREFIX: &str = "coffer-";

pub fn is_pgo(req: &ActionRequest) -> bool {
    req.subject.kind == KIND
}

/// What a restore point of a PGO cluster records besides the set.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgoRecord {
    pub cluster: String,
    pub namespace: String,
    pub repo_name: String,
    /// The id coffer annotated the backup with, and PGO reported back.
    pub backup_id: String,
}

fn cluster(req: &ActionRequest) -> types::ObjectRef {
    req.subject.clone()
}

fn describe(o: &types::ObjectRef) -> String {
    format!(
        "PostgresCluster {}/{}",
        o.namespace.as_deref().unwrap_or(""),
        o.name
    )
}

fn get(o: &types::ObjectRef) -> Result<Value, Error> {
    let text = kube::get(o)?;
    serde_json::from_str(&text)
        .map_err(|e| sdk::internal(format!("{} is not JSON: {e}", describe(o))))
}

fn patch(o: &types::ObjectRef, p: &Value) -> Result<Value, Error> {
    let text = kube::patch(o, &p.to_string())?;
    serde_json::from_str(&text).map_err(|e| sdk::internal(e.to_string()))
}

/// A unique id for an annotation: PGO acts when the value changes.
fn unique_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{ID_PREFIX}{what}-{nanos:x}")
}

/// PGO's status of a manual backup or a restore (`PGBackRestJobStatus`).
#[derive(Debug, Default)]
struct JobStatus {
    id: String,
    finished: bool,
    succeeded: u64,
    failed: u64,
}

fn job_status(c: &Value, which: &str) -> JobStatus {
    let s = &c["status"]["pgbackrest"][which];
    JobStatus {
        id: s["id"].as_str().unwrap_or_default().to_string(),
        finished: s["finished"].as_bool().unwrap_or(false),
        succeeded: s["succeeded"].as_u64().unwrap_or(0),
        failed: s["failed"].as_u64().unwrap_or(0),
    }
}

/// Poll `o` until `done` says yes (Some(Ok)) or no (Some(Err)); checks cancellation.
fn wait(
    o: &types::ObjectRef,
    what: &str,
    minutes: u64,
    mut done: impl FnMut(&Value) -> Option<Result<(), Error>>,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let c = get(o)?;
        if let Some(r) = done(&c) {
            return r;
        }
        if sdk::runtime::cancelled() {
            return Err(Error::Cancelled);
        }
        if started.elapsed().as_secs() > minutes * 60 {
            return Err(Error::Timeout(format!(
                "{what} on {} did not finish in {minutes} minutes (params.waitMinutes); is PGO running?",
                describe(o)
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The newest Job of the cluster with these PGO labels, to name in an error.
fn job_name(o: &types::ObjectRef, selector: &str) -> String {
    let sel = format!(
        "postgres-operator.crunchydata.com/cluster={},{selector}",
        o.name
    );
    let jobs = kube::list_objects("batch/v1", "Job", o.namespace.as_deref(), Some(&sel))
        .unwrap_or_default();
    jobs.iter()
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .max_by_key(|j| {
            j["metadata"]["creationTimestamp"]
                .as_str()
                .map(String::from)
        })
        .and_then(|j| j["metadata"]["name"].as_str().map(String::from))
        .unwrap_or_else(|| "(no Job found)".into())
}

/// A restore coffer enabled and could not switch off (its process died): off now, once PGO
/// has finished with it, so no later annotation restores again.
fn settle_leftover_restore(o: &types::ObjectRef, c: &Value) -> Result<(), Error> {
    let enabled = c
        .pointer("/spec/backups/pgbackrest/restore/enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let annotated = c["metadata"]["annotations"][RESTORE_ANNOTATION]
        .as_str()
        .unwrap_or_default();
    let status = job_status(c, "restore");
    // Finished, or failed and stuck: PGO is done with it either way.
    let over = status.finished || status.failed > 0;
    if enabled && annotated.starts_with(ID_PREFIX) && status.id == annotated && over {
        log::warn(
            "a restore coffer started was left enabled; switching it off",
            &[("id", annotated)],
        );
        disable_restore(o)?;
    }
    Ok(())
}

fn disable_restore(o: &types::ObjectRef) -> Result<(), Error> {
    let mut last = None;
    for _ in 0..5 {
        match patch(
            o,
            &json!({"spec": {"backups": {"pgbackrest": {"restore": {"enabled": false}}}}}),
        ) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last.unwrap_or_else(|| sdk::internal("patch failed")))
}

pub fn backup(
    req: &ActionRequest,
    stanza: Option<&str>,
    minutes: u64,
) -> Result<ActionOutput, Error> {
    let o = cluster(req);
    let c = get(&o)?;
    let Some(manual) = c.pointer("/spec/backups/pgbackrest/manual") else {
        return Err(sdk::invalid(format!(
            "{} has no spec.backups.pgbackrest.manual, and PGO takes a manual backup only when it is set: add `manual: {{repoName: repo1, options: [--type=full]}}` under spec.backups.pgbackrest and retry",
            describe(&o)
        )));
    };
    let repo_name = manual["repoName"].as_str().unwrap_or("repo1").to_string();
    settle_leftover_restore(&o, &c)?;
    let before = info::stanza(stanza)?.labels();
    let id = unique_id("backup");
    patch(
        &o,
        &json!({"metadata": {"annotations": {BACKUP_ANNOTATION: id}}}),
    )?;
    log::info(
        "asked PGO for a manual backup",
        &[("cluster", &o.name), ("id", &id), ("repo", &repo_name)],
    );
    wait(&o, "the manual backup", minutes, |c| {
        let s = job_status(c, "manualBackup");
        // Another id (an earlier backup's, or none yet) says nothing about this one.
        if s.id != id || !s.finished {
            return None;
        }
        Some(if s.succeeded > 0 {
            Ok(())
        } else {
            Err(sdk::internal(format!(
                "PGO's manual backup {id} of {} failed ({} failed pod(s)): see `kubectl logs -n {} job/{}`",
                describe(&o),
                s.failed,
                o.namespace.as_deref().unwrap_or(""),
                job_name(
                    &o,
                    "postgres-operator.crunchydata.com/pgbackrest-backup=manual"
                )
            )))
        })
    })?;
    let after = info::stanza(stanza)?;
    let set = after
        .newest_since(&before)
        .ok_or_else(|| {
            sdk::internal(format!(
                "PGO reports manual backup {id} succeeded, but pgbackrest info in the repo host lists no new set in stanza {}",
                after.name
            ))
        })?
        .clone();
    let pgo = PgoRecord {
        cluster: o.name.clone(),
        namespace: o.namespace.clone().unwrap_or_default(),
        repo_name,
        backup_id: id,
    };
    crate::store_record(&after, &set, Some(pgo))
}

/// pgBackRest options for PGO's restore: PGO joins them with spaces into a shell command,
/// so a target is always double-quoted (`;`, `|` or `&` in a restore point's name would
/// otherwise run in the restore Job), and one that needs more quoting is refused.
fn restore_options(r: &Record, p: &RestoreParams) -> Result<Vec<String>, Error> {
    let mut opts = vec![format!("--set={}", r.label)];
    match &p.target {
        None => opts.push("--type=immediate".into()),
        Some(t) => {
            let (kind, value) = t.options().map_err(sdk::invalid)?;
            crate::before_backup_end(t, r)?;
            if value.chars().any(|c| "\"\\$`'".contains(c)) {
                return Err(sdk::invalid(format!(
                    "params.target: {value:?} has a character PGO's restore command line cannot carry"
                )));
            }
            opts.push(format!("--type={kind}"));
            opts.push(format!("--target=\"{value}\""));
            if t.exclusive {
                opts.push("--target-exclusive".into());
            }
        }
    }
    Ok(opts)
}

pub fn restore(req: &ActionRequest, r: &Record, p: &RestoreParams) -> Result<ActionOutput, Error> {
    let o = cluster(req);
    let pgo = r.pgo.as_ref().ok_or_else(|| {
        sdk::invalid(format!(
            "restore point of stanza {} set {} was not made through PGO: restore it with a Workload (local mode)",
            r.stanza, r.label
        ))
    })?;
    let options = restore_options(r, p)?;
    let c = get(&o)?;
    settle_leftover_restore(&o, &c)?;
    let id = unique_id("restore");
    patch(
        &o,
        &json!({
            "metadata": {"annotations": {RESTORE_ANNOTATION: id}},
            "spec": {"backups": {"pgbackrest": {"restore": {
                "enabled": true, "repoName": pgo.repo_name, "options": options}}}}
        }),
    )?;
    log::info(
        "asked PGO for an in-place restore",
        &[("cluster", &o.name), ("id", &id), ("label", &r.label)],
    );
    let waited = wait(&o, "the restore", p.wait_minutes, |c| {
        let s = job_status(c, "restore");
        if s.id != id {
            return None;
        }
        if s.finished && s.succeeded > 0 {
            return Some(Ok(()));
        }
        // PGO keeps a failed restore Job and the cluster down while restore stays enabled:
        // waiting longer would never end.
        (s.failed > 0).then(|| {
            Err(sdk::internal(format!(
                "PGO's restore {id} of {} failed ({} failed pod(s)) and would stay stuck: coffer switched spec.backups.pgbackrest.restore.enabled off; see `kubectl logs -n {} job/{}-pgbackrest-restore`, then check the cluster's data before using it",
                describe(&o),
                s.failed,
                o.namespace.as_deref().unwrap_or(""),
                o.name
            )))
        })
    });
    // Whatever happened: PGO must not restore again on a later annotation.
    let disabled = disable_restore(&o);
    waited?;
    disabled.map_err(|e| {
        sdk::internal(format!(
            "the restore finished, but switching spec.backups.pgbackrest.restore.enabled off on {} failed ({}); set it to false by hand",
            describe(&o),
            sdk::error_text(&e)
        ))
    })?;
    log::info("restored through PGO", &[("label", &r.label)]);
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![
            ("label".into(), r.label.clone()),
            ("cluster".into(), o.name.clone()),
            ("restoreId".into(), id),
        ],
    })
}
