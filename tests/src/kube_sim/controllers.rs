//! What a cluster's controllers do, run after every write and on a 200 ms tick: objects
//! whose finalizers are gone after a deletion are removed; StatefulSets and Deployments get
//! their pods (Running and Ready at once, no image pulled: an exec in them runs locally);
//! PersistentVolumeClaims are bound to a local directory (annotation `sim.coffer.dev/path`);
//! a simulated CSI snapshotter cuts VolumeSnapshots a tick after creation by copying the
//! claim's directory and makes them ready a tick later (VolumeSnapshotClass parameters
//! delay either, or fail after the cut), VolumeGroupSnapshots likewise (`groups`), and a
//! claim whose dataSource is a ready snapshot starts as a copy of it.

use super::{Key, State, record, stamp_new, time_now};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub const PATH_ANNOTATION: &str = "sim.coffer.dev/path";

pub(super) fn react(st: &mut State) {
    finish_deletions(st);
    volumes(st);
    snapshots(st);
    super::groups::group_snapshots(st);
    for (plural, kind) in [
        ("statefulsets", "StatefulSet"),
        ("deployments", "Deployment"),
    ] {
        let keys: Vec<Key> = st
            .objects
            .keys()
            .filter(|k| k.0 == "apps" && k.1 == plural)
            .cloned()
            .collect();
        for k in keys {
            reconcile_pods(st, &k, kind);
        }
        remove_orphan_pods(st, kind);
    }
    start_bare_pods(st);
}

/// Pods created directly (task pods) start at once.
fn start_bare_pods(st: &mut State) {
    for k in of_kind(st, "", "pods") {
        let pod = st.objects[&k].clone();
        if pod.get("status").is_some_and(|s| !s.is_null()) {
            continue;
        }
        let mut new = pod;
        new["status"] = json!({"phase": "Running", "podIP": "127.0.0.1", "startTime": time_now(),
                               "conditions": [{"type": "Ready", "status": "True"}]});
        update(st, &k, new);
    }
}

fn finish_deletions(st: &mut State) {
    let done: Vec<Key> = st
        .objects
        .iter()
        .filter(|(_, o)| {
            o.pointer("/metadata/deletionTimestamp").is_some()
                && o.pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in done {
        if let Some(o) = st.objects.remove(&k) {
            st.resource_version += 1;
            record(st, "DELETED", &k, &o);
        }
    }
}

fn pod_name(kind: &str, owner: &str, i: u64) -> String {
    match kind {
        "StatefulSet" => format!("{owner}-{i}"),
        _ => format!("{owner}-sim-{i}"),
    }
}

fn owned_by(pod: &Value, kind: &str, name: &str) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["kind"] == kind && r["name"] == name))
}

fn reconcile_pods(st: &mut State, key: &Key, kind: &str) {
    let Some(w) = st.objects.get(key).cloned() else {
        return;
    };
    let (ns, name) = (key.2.clone(), key.3.clone());
    let replicas = w
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let template = w.pointer("/spec/template").cloned().unwrap_or(json!({}));
    for i in 0..replicas {
        let pname = pod_name(kind, &name, i);
        let pkey: Key = (String::new(), "pods".into(), ns.clone(), pname.clone());
        if st.objects.contains_key(&pkey) {
            continue;
        }
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": name,
                                     "uid": w.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                                     "controller": true}],
            },
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
            "status": {"phase": "Running", "podIP": "127.0.0.1", "startTime": time_now(),
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        let target = super::Target {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            namespace: ns.clone(),
            name: Some(pname.clone()),
            status: false,
        };
        stamp_new(st, &mut pod, &target, &pname);
        st.objects.insert(pkey.clone(), pod.clone());
        record(st, "ADDED", &pkey, &pod);
    }
    // Scaled down: the pods beyond the count go.
    let extra: Vec<Key> = st
        .objects
        .iter()
        .filter(|(k, o)| k.1 == "pods" && k.2 == ns && owned_by(o, kind, &name))
        .filter(|(k, _)| (0..replicas).all(|i| pod_name(kind, &name, i) != k.3))
        .map(|(k, _)| k.clone())
        .collect();
    for k in extra {
        if let Some(o) = st.objects.remove(&k) {
            st.resource_version += 1;
            record(st, "DELETED", &k, &o);
        }
    }
    let status = json!({"replicas": replicas, "readyReplicas": replicas,
                        "availableReplicas": replicas,
                        "observedGeneration": w.pointer("/metadata/generation").cloned().unwrap_or(json!(1))});
    if w.get("status") != Some(&status) {
        let mut new = w.clone();
        new["status"] = status;
        st.resource_version += 1;
        new["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
        st.objects.insert(key.clone(), new.clone());
        record(st, "MODIFIED", key, &new);
    }
}

/// Pods whose StatefulSet or Deployment was deleted.
fn remove_orphan_pods(st: &mut State, kind: &str) {
    let plural = match kind {
        "StatefulSet" => "statefulsets",
        _ => "deployments",
    };
    let orphans: Vec<Key> = st
        .objects
        .iter()
        .filter(|(k, _)| k.1 == "pods")
        .filter(|(k, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|r| r.iter().find(|r| r["kind"] == kind))
                .and_then(|r| r["name"].as_str())
                .is_some_and(|owner| {
                    !st.objects.contains_key(&(
                        "apps".into(),
                        plural.into(),
                        k.2.clone(),
                        owner.to_string(),
                    ))
                })
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in orphans {
        if let Some(o) = st.objects.remove(&k) {
            st.resource_version += 1;
            record(st, "DELETED", &k, &o);
        }
    }
}

pub(super) fn update(st: &mut State, key: &Key, new: Value) {
    let mut new = new;
    st.resource_version += 1;
    new["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
    st.objects.insert(key.clone(), new.clone());
    record(st, "MODIFIED", key, &new);
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            bytes += copy_dir(&e.path(), &target)?;
        } else {
            bytes += std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(bytes)
}

pub(super) fn of_kind<'a>(st: &'a State, group: &'a str, plural: &'a str) -> Vec<Key> {
    st.objects
        .keys()
        .filter(|k| k.0 == group && k.1 == plural)
        .cloned()
        .collect()
}

pub(super) fn volume_dir(st: &State, ns: &str, name: &str) -> PathBuf {
    st.root.join("volumes").join(ns).join(name)
}

pub(super) fn snapshot_dir(st: &State, ns: &str, name: &str) -> PathBuf {
    st.root.join("snapshots").join(ns).join(name)
}

fn volumes(st: &mut State) {
    for k in of_kind(st, "", "persistentvolumeclaims") {
        let pvc = st.objects[&k].clone();
        if pvc.pointer("/status/phase").and_then(Value::as_str) == Some("Bound") {
            continue;
        }
        let dir = volume_dir(st, &k.2, &k.3);
        let source = pvc.pointer("/spec/dataSource").cloned();
        let filled = match source {
            Some(src) if src["kind"] == "VolumeSnapshot" => {
                let name = src["name"].as_str().unwrap_or_default();
                let skey: Key = (
                    "snapshot.storage.k8s.io".into(),
                    "volumesnapshots".into(),
                    k.2.clone(),
                    name.into(),
                );
                let ready = st
                    .objects
                    .get(&skey)
                    .is_some_and(|s| s.pointer("/status/readyToUse") == Some(&Value::Bool(true)));
                ready && copy_dir(&snapshot_dir(st, &k.2, name), &dir).is_ok()
            }
            _ => std::fs::create_dir_all(&dir).is_ok(),
        };
        let mut new = pvc.clone();
        if filled {
            new["metadata"]["annotations"][PATH_ANNOTATION] = json!(dir.display().to_string());
            new["status"] = json!({"phase": "Bound", "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                                   "capacity": {"storage": pvc.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}});
        } else {
            if pvc.pointer("/status/phase").and_then(Value::as_str) == Some("Pending") {
                continue;
            }
            new["status"] = json!({"phase": "Pending"});
        }
        update(st, &k, new);
    }
}

/// VolumeSnapshotClass parameters that shape the simulated snapshotter: how long after
/// creation the copy is cut, how long after the cut it is ready, and an error it reports
/// after the cut instead of becoming ready.
pub const CUT_AFTER_MS: &str = "sim.coffer.dev/cut-after-ms";
pub const READY_AFTER_MS: &str = "sim.coffer.dev/ready-after-ms";
pub const FAIL_AFTER_CUT: &str = "sim.coffer.dev/fail-after-cut";
/// A class parameter: the cut time is on the bound VolumeSnapshotContent only (nanoseconds,
/// as the sidecar writes it) until the snapshot is ready.
pub const CUT_ON_CONTENT: &str = "sim.coffer.dev/cut-on-content";
/// When the simulator first saw a snapshot and when it cut it (ms since the epoch).
pub(super) const SEEN_MS: &str = "sim.coffer.dev/seen-ms";
pub(super) const CUT_MS: &str = "sim.coffer.dev/cut-ms";
/// The cut time a snapshot whose class cuts on the content learns when ready.
const CUT_AT: &str = "sim.coffer.dev/cut-at";

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Now, RFC 3339 with milliseconds (a VolumeSnapshot's creationTime).
pub(super) fn time_now_ms() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}

/// A class parameter of the snapshot's VolumeSnapshotClass.
fn class_param(st: &State, snap: &Value, name: &str) -> Option<String> {
    let class = snap.pointer("/spec/volumeSnapshotClassName")?.as_str()?;
    parameter(
        st,
        "snapshot.storage.k8s.io",
        "volumesnapshotclasses",
        class,
        name,
    )
}

/// Parameter `name` of class `class` (cluster-scoped, `group`/`plural`).
pub(super) fn parameter(
    st: &State,
    group: &str,
    plural: &str,
    class: &str,
    name: &str,
) -> Option<String> {
    let key: Key = (group.into(), plural.into(), String::new(), class.into());
    st.objects
        .get(&key)?
        .pointer(&format!("/parameters/{}", name.replace('/', "~1")))?
        .as_str()
        .map(str::to_string)
}

pub(super) fn annotation_ms(o: &Value, name: &str) -> u64 {
    o.pointer(&format!(
        "/metadata/annotations/{}",
        name.replace('/', "~1")
    ))
    .and_then(Value::as_str)
    .and_then(|v| v.parse().ok())
    .unwrap_or_default()
}

/// A snapshotter in three steps, as the external-snapshotter reports them: created (not
/// cut), cut (`creationTime` set: the copy of the claim's directory is taken now), ready
/// (`readyToUse`), each on a later tick, and after the class's delays when it sets them.
fn snapshots(st: &mut State) {
    let keys = of_kind(st, "snapshot.storage.k8s.io", "volumesnapshots");
    let now = now_ms();
    for k in &keys {
        let snap = st.objects[k].clone();
        let status = snap.get("status").cloned().unwrap_or(Value::Null);
        if status.get("readyToUse") == Some(&Value::Bool(true))
            || status.get("error").is_some()
            || status.get("volumeGroupSnapshotName").is_some()
        {
            // Done, or a group's member, which its group makes ready.
            continue;
        }
        let param_ms = |name: &str| {
            class_param(st, &snap, name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut new = snap.clone();
        if status.is_null() {
            new["status"] = json!({"readyToUse": false});
            new["metadata"]["annotations"][SEEN_MS] = json!(now.to_string());
            update(st, k, new);
            continue;
        }
        if status.get("creationTime").is_none() && annotation_ms(&snap, CUT_MS) == 0 {
            if now < annotation_ms(&snap, SEEN_MS) + param_ms(CUT_AFTER_MS) {
                continue;
            }
            let claim = snap
                .pointer("/spec/source/persistentVolumeClaimName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let ckey: Key = (
                String::new(),
                "persistentvolumeclaims".into(),
                k.2.clone(),
                claim.into(),
            );
            let bound = st.objects.get(&ckey).is_some_and(|c| {
                c.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
            });
            if !bound {
                new["status"] = json!({"readyToUse": false, "error": {"message": format!("PersistentVolumeClaim {claim} is not bound or does not exist"), "time": time_now()}});
            } else {
                match copy_dir(&volume_dir(st, &k.2, claim), &snapshot_dir(st, &k.2, &k.3)) {
                    Ok(bytes) => {
                        let content = format!("snapcontent-{}", k.3);
                        new["status"] = json!({"readyToUse": false, "restoreSize": bytes.to_string(), "creationTime": time_now_ms(),
                                               "boundVolumeSnapshotContentName": content});
                        new["metadata"]["annotations"][CUT_MS] = json!(now.to_string());
                        if class_param(st, &snap, CUT_ON_CONTENT).is_some() {
                            let cut_at = new["status"]["creationTime"].take();
                            new["metadata"]["annotations"][CUT_AT] = cut_at;
                            let key: Key = (
                                "snapshot.storage.k8s.io".into(),
                                "volumesnapshotcontents".into(),
                                String::new(),
                                content.clone(),
                            );
                            st.resource_version += 1;
                            let obj = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
                                             "metadata": {"name": content, "resourceVersion": st.resource_version.to_string()},
                                             "spec": {"volumeSnapshotRef": {"name": k.3, "namespace": k.2}},
                                             "status": {"creationTime": now as i64 * 1_000_000, "readyToUse": false}});
                            st.objects.insert(key.clone(), obj.clone());
                            record(st, "ADDED", &key, &obj);
                        }
                    }
                    Err(e) => {
                        new["status"] = json!({"readyToUse": false, "error": {"message": format!("copying the volume: {e}"), "time": time_now()}})
                    }
                }
            }
            update(st, k, new);
            continue;
        }
        if now < annotation_ms(&snap, CUT_MS) + param_ms(READY_AFTER_MS) {
            continue;
        }
        match class_param(st, &snap, FAIL_AFTER_CUT) {
            Some(message) => {
                new["status"]["error"] = json!({"message": message, "time": time_now()});
            }
            None => {
                new["status"]["readyToUse"] = json!(true);
                // The snapshot learns its cut time from its content by now.
                if let Some(t) = snap.pointer(&format!(
                    "/metadata/annotations/{}",
                    CUT_AT.replace('/', "~1")
                )) {
                    new["status"]["creationTime"] = t.clone();
                }
            }
        }
        update(st, k, new);
    }
    // Deleted snapshots take their copy with them.
    let base = st.root.join("snapshots");
    for ns in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        for d in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let key: Key = (
                "snapshot.storage.k8s.io".into(),
                "volumesnapshots".into(),
                ns.file_name().to_string_lossy().into(),
                d.file_name().to_string_lossy().into(),
            );
            if !keys.contains(&key) {
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
    }
}
