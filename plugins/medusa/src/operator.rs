//! Kubernetes mode: the subject is a K8ssandra `CassandraDatacenter` (or a `K8ssandraCluster`
//! and its `datacenter` param), and the k8ssandra operator runs Medusa in the datacenter's
//! pods. coffer asks it through its own API, `medusa.k8ssandra.io/v1alpha1` (the kinds of
//! k8ssandra-operator 1.x), in the datacenter's namespace:
//!
//! backup  = apply a `MedusaBackupJob {cassandraDatacenter, backupType}`; wait for a
//!           `finishTime` that is not before its `startTime` (an epoch `finishTime` while
//!           it runs is k8ssandra-operator#1301); fail naming the pods in `failed[]`; then the
//!           `MedusaBackup` of the same name must say `SUCCESS` (one saying `IN_PROGRESS`
//!           with every node finished, cassandra-medusa#965, is taken after a grace period,
//!           with a warning). A backup that fails or never finishes (#1380) leaves no
//!           MedusaBackupJob or MedusaBackup behind (the operator makes a MedusaBackup even
//!           for a failed one, #1383), and no restore point.
//! restore = the MedusaBackup must exist and be complete; a full safety backup of the
//!           datacenter as it is (same way); apply a `MedusaRestoreJob {backup,
//!           cassandraDatacenter}`; wait for its `finishTime`; fail on `message` or
//!           `failed[]`. A restore that failed after the operator stopped the datacenter
//!           restores the safety backup the same way.
//! delete  = delete the MedusaBackup and MedusaBackupJob; `purge: true` then a
//!           `MedusaTask {operation: purge}`. Medusa's storage is pruned only by a purge
//!           (the configuration's retention), and a `sync` task makes MedusaBackup objects
//!           again for backups still in the storage.
//! verify  = the MedusaBackup still exists and is complete.

use crate::cli::Node;
use crate::{Record, RestoreParams};
use coffer_plugin_sdk::{self as sdk, ActionOutput, ActionRequest, Error, kube, log, types};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const API: &str = "medusa.k8ssandra.io/v1alpha1";
pub const DATACENTER: &str = "CassandraDatacenter";
pub const CLUSTER: &str = "K8ssandraCluster";
const FIELD_MANAGER: &str = "coffer";
/// How long a MedusaBackup may say IN_PROGRESS with every node finished before coffer takes
/// it as complete (cassandra-medusa#965).
const IN_PROGRESS_GRACE: Duration = Duration::from_secs(20);

pub fn applies(req: &ActionRequest) -> bool {
    [DATACENTER, CLUSTER].contains(&req.subject.kind.as_str())
}

/// What a restore point made through the operator records besides the backup's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRecord {
    pub namespace: String,
    pub datacenter: String,
    pub total_nodes: u64,
    pub finished_nodes: u64,
    /// Medusa's own human-readable size (`1.2 MB`).
    pub total_size: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The datacenter an action works on, in the subject's namespace.
pub struct Datacenter {
    pub namespace: String,
    pub name: String,
}

impl Datacenter {
    fn obj(&self, kind: &str, name: &str) -> types::ObjectRef {
        types::ObjectRef {
            api_version: API.into(),
            kind: kind.into(),
            namespace: Some(self.namespace.clone()),
            name: name.into(),
        }
    }
}

fn describe(o: &types::ObjectRef) -> String {
    format!(
        "{} {}/{}",
        o.kind,
        o.namespace.as_deref().unwrap_or(""),
        o.name
    )
}

/// The subject's datacenter: the CassandraDatacenter itself, or the K8ssandraCluster's one
/// named by `wanted` (its only one when it has one).
pub fn datacenter(req: &ActionRequest, wanted: Option<&str>) -> Result<Datacenter, Error> {
    let s = &req.subject;
    let namespace = s.namespace.clone().unwrap_or_default();
    if s.kind == DATACENTER {
        if let Some(w) = wanted
            && w != s.name
        {
            return Err(sdk::invalid(format!(
                "params.datacenter: {w:?} is not the subject CassandraDatacenter {}; leave it out",
                s.name
            )));
        }
        return Ok(Datacenter {
            namespace,
            name: s.name.clone(),
        });
    }
    let cluster = get(s)?;
    let dcs: Vec<(String, Option<String>)> = cluster
        .pointer("/spec/cassandra/datacenters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let name = d.pointer("/metadata/name")?.as_str()?.to_string();
            let ns = d
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from);
            Some((name, ns))
        })
        .collect();
    let names: Vec<&str> = dcs.iter().map(|(n, _)| n.as_str()).collect();
    let chosen = match (wanted, &dcs[..]) {
        (Some(w), _) => dcs.iter().find(|(n, _)| n == w).ok_or_else(|| {
            sdk::invalid(format!(
                "params.datacenter: {} has no datacenter {w:?} (it has {})",
                describe(s),
                names.join(", ")
            ))
        })?,
        (None, [one]) => one,
        (None, _) => {
            return Err(sdk::invalid(format!(
                "params.datacenter: {} has {} datacenters ({}); name the one to act on",
                describe(s),
                dcs.len(),
                names.join(", ")
            )));
        }
    };
    if let Some(other) = &chosen.1
        && *other != namespace
    {
        return Err(sdk::invalid(format!(
            "datacenter {} of {} runs in namespace {other}, and coffer acts only in the subject's namespace {namespace}: protect that CassandraDatacenter itself",
            chosen.0,
            describe(s)
        )));
    }
    Ok(Datacenter {
        namespace,
        name: chosen.0.clone(),
    })
}

fn get(o: &types::ObjectRef) -> Result<Value, Error> {
    let text = kube::get(o)?;
    serde_json::from_str(&text)
        .map_err(|e| sdk::internal(format!("{} is not JSON: {e}", describe(o))))
}

/// The object, or None when the API server has none of that name.
fn get_opt(o: &types::ObjectRef) -> Result<Option<Value>, Error> {
    match get(o) {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Delete, an object already gone counting as deleted.
fn remove(o: &types::ObjectRef) -> Result<(), Error> {
    match kube::delete(o) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn apply(dc: &Datacenter, kind: &str, name: &str, spec: Value) -> Result<types::ObjectRef, Error> {
    let o = dc.obj(kind, name);
    let manifest = json!({
        "apiVersion": API, "kind": kind,
        "metadata": {"name": name, "namespace": dc.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "coffer"}},
        "spec": spec,
    });
    kube::apply(&manifest.to_string(), FIELD_MANAGER)?;
    Ok(o)
}

/// A `metav1.Time` that is set: not absent, null, Go's zero time or the epoch.
fn time_set(v: &Value) -> Option<&str> {
    let t = v.as_str()?;
    (!t.is_empty() && !t.starts_with("0001-") && !t.starts_with("1970-")).then_some(t)
}

/// Whether a status's `finishTime` says the work is over. metav1.Time is RFC 3339 in UTC
/// to the second, so the strings compare as times.
fn finished(status: &Value) -> bool {
    match (
        time_set(&status["startTime"]),
        time_set(&status["finishTime"]),
    ) {
        (Some(start), Some(finish)) => finish >= start,
        (None, Some(_)) => true,
        _ => false,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Poll `o` until `done` says yes (Some(Ok)) or no (Some(Err)), for at most `minutes`.
fn wait<T>(
    o: &types::ObjectRef,
    what: &str,
    minutes: f64,
    mut done: impl FnMut(Option<&Value>) -> Option<Result<T, Error>>,
) -> Result<T, Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let v = get_opt(o)?;
        if let Some(r) = done(v.as_ref()) {
            return r;
        }
        if sdk::runtime::cancelled() {
            return Err(Error::Cancelled);
        }
        if started.elapsed().as_secs_f64() > minutes * 60.0 {
            return Err(Error::Timeout(format!(
                "{} did not finish {what} in {minutes} minute(s) (params.waitMinutes); is the k8ssandra operator running? (`kubectl describe` it; k8ssandra-operator#1380 leaves some jobs unfinished forever)",
                describe(o)
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(3));
    }
}

/// A new object name: `coffer-20261205t104512-1a2b3c` (Kubernetes names are lowercase).
fn new_name(tag: &str) -> String {
    crate::cli::new_name(tag).to_ascii_lowercase()
}

/// What a MedusaBackupJob and its MedusaBackup came to.
struct Made {
    name: String,
    status: Value,
    warnings: Vec<String>,
}

/// Apply a MedusaBackupJob and wait until its MedusaBackup is complete. Whatever fails, the
/// job and its MedusaBackup are deleted again.
fn make_backup(dc: &Datacenter, name: &str, mode: &str, minutes: f64) -> Result<Made, Error> {
    let job = apply(
        dc,
        "MedusaBackupJob",
        name,
        json!({"cassandraDatacenter": dc.name, "backupType": mode}),
    )?;
    log::info(
        "asked the k8ssandra operator for a Medusa backup",
        &[("job", &describe(&job)), ("mode", mode)],
    );
    let made = wait_backup(dc, &job, minutes);
    if made.is_err() {
        let backup = dc.obj("MedusaBackup", name);
        let removed = remove(&backup).and_then(|_| remove(&job));
        if let Err(e) = removed {
            log::warn(
                "the failed backup's MedusaBackupJob or MedusaBackup could not be deleted",
                &[("job", &describe(&job)), ("error", &sdk::error_text(&e))],
            );
        }
    }
    made
}

fn wait_backup(dc: &Datacenter, job: &types::ObjectRef, minutes: f64) -> Result<Made, Error> {
    let mut told_epoch = false;
    let status = wait(job, "its backup", minutes, |j| {
        let Some(j) = j else {
            return Some(Err(sdk::internal(format!(
                "{} was deleted while it ran",
                describe(job)
            ))));
        };
        let s = &j["status"];
        if !told_epoch
            && time_set(&s["startTime"]).is_some()
            && !finished(s)
            && let Some(f) = s["finishTime"].as_str().filter(|f| f.starts_with("1970-"))
        {
            log::warn(
                "the MedusaBackupJob's finishTime is the epoch while it runs (k8ssandra-operator#1301); waiting on",
                &[("finishTime", f)],
            );
            told_epoch = true;
        }
        finished(s).then(|| Ok(s.clone()))
    })?;
    let failed = strings(&status["failed"]);
    if !failed.is_empty() {
        return Err(sdk::internal(format!(
            "{} failed on pod(s) {} (see `kubectl logs -n {} POD -c medusa`); the job and any MedusaBackup the operator made for it were deleted (k8ssandra-operator#1383), and nothing was recorded",
            describe(job),
            failed.join(", "),
            dc.namespace
        )));
    }
    let backup = dc.obj("MedusaBackup", &job.name);
    let mut since_all_done: Option<Instant> = None;
    let mut warnings = Vec::new();
    let status = wait(&backup, "(the MedusaBackup of the job)", minutes, |b| {
        let s = &b?["status"];
        let state = s["status"].as_str().unwrap_or_default();
        let (total, done) = (
            s["totalNodes"].as_u64().unwrap_or(0),
            s["finishedNodes"].as_u64().unwrap_or(0),
        );
        match state {
            "SUCCESS" => return Some(Ok(s.clone())),
            "FAILED" => {
                return Some(Err(sdk::internal(format!(
                    "{} says FAILED ({done} of {total} node(s) finished); it and its job were deleted, and nothing was recorded",
                    describe(&backup)
                ))));
            }
            _ => {}
        }
        if total > 0 && done == total {
            let since = *since_all_done.get_or_insert_with(Instant::now);
            if since.elapsed() >= IN_PROGRESS_GRACE {
                let w = format!(
                    "MedusaBackup {} said {state} with all {total} node(s) finished for {}s (cassandra-medusa#965); taken as complete",
                    backup.name,
                    IN_PROGRESS_GRACE.as_secs()
                );
                log::warn(&w, &[]);
                warnings.push(w);
                return Some(Ok(s.clone()));
            }
        }
        None
    })?;
    Ok(Made {
        name: job.name.clone(),
        status,
        warnings,
    })
}

fn record_of(dc: &Datacenter, made: &Made, mode: &str) -> Record {
    let s = &made.status;
    let nodes = s["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| Node {
            fqdn: n["host"].as_str().unwrap_or_default().to_string(),
            started: None,
            finished: None,
            num_objects: 0,
            size: 0,
            release_version: None,
        })
        .collect();
    Record {
        name: made.name.clone(),
        mode: mode.to_string(),
        nodes,
        started: None,
        finished: None,
        size: 0,
        files: s["totalFiles"].as_u64().unwrap_or(0),
        operator: Some(OperatorRecord {
            namespace: dc.namespace.clone(),
            datacenter: dc.name.clone(),
            total_nodes: s["totalNodes"].as_u64().unwrap_or(0),
            finished_nodes: s["finishedNodes"].as_u64().unwrap_or(0),
            total_size: s["totalSize"].as_str().unwrap_or_default().to_string(),
            warnings: made.warnings.clone(),
        }),
    }
}

pub fn backup(req: &ActionRequest, p: &crate::BackupParams) -> Result<ActionOutput, Error> {
    let dc = datacenter(req, p.datacenter.as_deref())?;
    let made = make_backup(&dc, &new_name(""), &p.mode, p.wait_minutes)?;
    let record = record_of(&dc, &made, &p.mode);
    let mut out = crate::store(record)?;
    out.outputs.push(("datacenter".into(), dc.name.clone()));
    out.outputs.push((
        "storage".into(),
        "Medusa's storage is pruned only by its purge (a delete with purge: true, or its retention); a MedusaTask sync makes MedusaBackup objects again for backups still in the storage".into(),
    ));
    if !made.warnings.is_empty() {
        out.outputs
            .push(("warnings".into(), made.warnings.join("; ")));
    }
    Ok(out)
}

/// The record's operator part, or why this restore point was not made through it.
fn operator_record(r: &Record) -> Result<&OperatorRecord, Error> {
    r.operator.as_ref().ok_or_else(|| {
        sdk::invalid(format!(
            "medusa backup {} was made with the medusa CLI (local mode), not through the k8ssandra operator: restore it with its Workload",
            r.name
        ))
    })
}

/// The datacenter a restore point's backup was made of, in the subject's namespace.
fn recorded_datacenter(req: &ActionRequest, r: &Record) -> Result<Datacenter, Error> {
    let op = operator_record(r)?;
    Ok(Datacenter {
        namespace: req
            .subject
            .namespace
            .clone()
            .unwrap_or_else(|| op.namespace.clone()),
        name: op.datacenter.clone(),
    })
}

/// The MedusaBackup must be there and complete.
fn usable(dc: &Datacenter, name: &str) -> Result<Value, Error> {
    let o = dc.obj("MedusaBackup", name);
    let b = get_opt(&o)?.ok_or_else(|| {
        sdk::invalid(format!(
            "{} does not exist (deleted; a MedusaTask with operation sync makes it again if the backup is still in Medusa's storage)",
            describe(&o)
        ))
    })?;
    let s = &b["status"];
    let (total, done) = (
        s["totalNodes"].as_u64().unwrap_or(0),
        s["finishedNodes"].as_u64().unwrap_or(0),
    );
    if s["status"] != "SUCCESS" && !(total > 0 && done == total) {
        return Err(sdk::invalid(format!(
            "{} is not complete: status {}, {done} of {total} node(s) finished",
            describe(&o),
            s["status"].as_str().unwrap_or("(none)")
        )));
    }
    Ok(s.clone())
}

/// What a MedusaRestoreJob came to: its status, and whether it stopped the datacenter.
fn run_restore(dc: &Datacenter, backup: &str, minutes: f64) -> Result<Value, (Error, bool)> {
    let name = new_name("restore-");
    let job = apply(
        dc,
        "MedusaRestoreJob",
        &name,
        json!({"backup": backup, "cassandraDatacenter": dc.name}),
    )
    .map_err(|e| (e, false))?;
    log::info(
        "asked the k8ssandra operator for a restore",
        &[("job", &describe(&job)), ("backup", backup)],
    );
    let mut stopped = false;
    let status = wait(&job, "its restore", minutes, |j| {
        let Some(j) = j else {
            return Some(Err(sdk::internal(format!(
                "{} was deleted while it ran",
                describe(&job)
            ))));
        };
        let s = &j["status"];
        stopped |= time_set(&s["datacenterStopped"]).is_some();
        if let Some(m) = s["message"].as_str().filter(|m| !m.is_empty()) {
            return Some(Err(sdk::internal(format!(
                "{} failed: {m}",
                describe(&job)
            ))));
        }
        let failed = strings(&s["failed"]);
        if finished(s) && !failed.is_empty() {
            return Some(Err(sdk::internal(format!(
                "{} failed on pod(s) {} (see `kubectl logs -n {} POD -c medusa-restore`)",
                describe(&job),
                failed.join(", "),
                dc.namespace
            ))));
        }
        finished(s).then(|| Ok(s.clone()))
    });
    status.map_err(|e| (e, stopped))
}

pub fn restore(req: &ActionRequest, r: &Record, p: &RestoreParams) -> Result<ActionOutput, Error> {
    operator_record(r)?;
    let dc = datacenter(req, p.datacenter.as_deref())?;
    usable(&dc, &r.name).map_err(|e| {
        sdk::invalid(format!(
            "{}. The datacenter was not touched.",
            sdk::error_text(&e)
        ))
    })?;
    let safety = if p.safety_backup {
        let name = new_name("before-restore-");
        log::info(
            "backing up the datacenter as it is, to restore it if this restore fails",
            &[("safetyBackup", &name)],
        );
        // Full, as in local mode (cassandra-medusa#523).
        make_backup(&dc, &name, "full", p.wait_minutes).map_err(|e| {
            sdk::internal(format!(
                "{}. The datacenter's current data could not be backed up first, so nothing was restored and it was not touched (params.safetyBackup: false restores without it).",
                sdk::error_text(&e)
            ))
        })?;
        Some(name)
    } else {
        None
    };
    let drop_safety = |name: &str| {
        let removed = remove(&dc.obj("MedusaBackup", name))
            .and_then(|_| remove(&dc.obj("MedusaBackupJob", name)));
        if let Err(e) = removed {
            log::warn(
                "the safety backup's objects could not be deleted",
                &[("safetyBackup", name), ("error", &sdk::error_text(&e))],
            );
        }
    };
    let status = match run_restore(&dc, &r.name, p.wait_minutes) {
        Ok(s) => s,
        Err((e, stopped)) => {
            let why = sdk::error_text(&e);
            let Some(safety) = safety else {
                return Err(sdk::internal(format!(
                    "{why}. No safety backup was made (params.safetyBackup: false): check the datacenter's data"
                )));
            };
            if !stopped {
                drop_safety(&safety);
                return Err(sdk::internal(format!(
                    "{why}. The operator never stopped the datacenter: its data was not touched"
                )));
            }
            log::warn(
                "the restore failed after the datacenter was stopped; restoring its data from before",
                &[("safetyBackup", &safety), ("error", &why)],
            );
            return Err(match run_restore(&dc, &safety, p.wait_minutes) {
                Ok(_) => {
                    drop_safety(&safety);
                    sdk::internal(format!(
                        "{why}. The datacenter was put back on its data from before the restore"
                    ))
                }
                Err((e2, _)) => sdk::internal(format!(
                    "{why}. Restoring its data from before the restore failed too ({}): it is in MedusaBackup {}/{safety}; a MedusaRestoreJob of it puts it back",
                    sdk::error_text(&e2),
                    dc.namespace
                )),
            });
        }
    };
    if let Some(s) = &safety {
        drop_safety(s);
    }
    log::info("datacenter restored", &[("backup", &r.name)]);
    let mut outputs = vec![
        ("backup".into(), r.name.clone()),
        ("datacenter".into(), dc.name.clone()),
        (
            "restoreKey".into(),
            status["restoreKey"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
    ];
    if let Some(t) = time_set(&status["datacenterStopped"]) {
        outputs.push(("datacenterStopped".into(), t.to_string()));
    }
    Ok(ActionOutput {
        artifacts: vec![],
        outputs,
    })
}

pub fn delete(req: &ActionRequest, r: &Record, purge: bool) -> Result<ActionOutput, Error> {
    let dc = recorded_datacenter(req, r)?;
    remove(&dc.obj("MedusaBackup", &r.name))?;
    remove(&dc.obj("MedusaBackupJob", &r.name))?;
    log::info(
        "MedusaBackup and MedusaBackupJob deleted; Medusa's storage keeps the files until a purge",
        &[("backup", &r.name)],
    );
    let mut out = ActionOutput {
        artifacts: vec![],
        outputs: vec![],
    };
    if purge {
        let task = apply(
            &dc,
            "MedusaTask",
            &new_name("purge-"),
            json!({"operation": "purge", "cassandraDatacenter": dc.name}),
        )?;
        let s = wait(&task, "its purge", 60.0, |t| {
            let s = &t?["status"];
            finished(s).then(|| Ok(s.clone()))
        })?;
        let failed = strings(&s["failed"]);
        if !failed.is_empty() {
            return Err(sdk::internal(format!(
                "{} failed on pod(s) {}; the restore point was kept, delete it again to retry",
                describe(&task),
                failed.join(", ")
            )));
        }
        let sum = |k: &str| {
            s["finished"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f[k].as_u64().unwrap_or(0))
                .sum::<u64>()
                .to_string()
        };
        log::info("Medusa purge done", &[("task", &describe(&task))]);
        out.outputs
            .push(("backupsPurged".into(), sum("nbBackupsPurged")));
        out.outputs
            .push(("objectsPurged".into(), sum("nbObjectsPurged")));
    }
    let mut deleted = sdk::delete_input_artifacts(req, crate::LOCATION)?;
    deleted.outputs.push(("backup".into(), r.name.clone()));
    deleted.outputs.extend(out.outputs);
    Ok(deleted)
}

pub fn verify(req: &ActionRequest, r: &Record) -> Result<ActionOutput, Error> {
    let dc = recorded_datacenter(req, r)?;
    let s = usable(&dc, &r.name)?;
    log::info("MedusaBackup is complete", &[("backup", &r.name)]);
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![
            ("backup".into(), r.name.clone()),
            (
                "status".into(),
                s["status"].as_str().unwrap_or_default().into(),
            ),
            (
                "files".into(),
                s["totalFiles"].as_u64().unwrap_or(0).to_string(),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_or_earlier_finish_time_is_not_finished() {
        let s = |v: Value| finished(&v);
        assert!(!s(json!({})));
        assert!(!s(
            json!({"startTime": "2026-12-05T10:00:00Z", "finishTime": null})
        ));
        // k8ssandra-operator#1301
        assert!(!s(
            json!({"startTime": "2026-12-05T10:00:00Z", "finishTime": "1970-01-01T00:00:00Z"})
        ));
        assert!(!s(
            json!({"startTime": "2026-12-05T10:00:00Z", "finishTime": "2026-12-05T09:59:59Z"})
        ));
        assert!(s(
            json!({"startTime": "2026-12-05T10:00:00Z", "finishTime": "2026-12-05T10:00:00Z"})
        ));
    }

    #[test]
    fn object_names_are_kubernetes_names() {
        let n = new_name("before-restore-");
        assert!(n.len() <= 63, "{n}");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{n}"
        );
    }
}
