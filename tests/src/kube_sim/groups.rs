//! A simulated CSI driver with group snapshots: a VolumeGroupSnapshot is cut a tick after
//! creation (after its VolumeGroupSnapshotClass's `CUT_AFTER_MS`) by copying every claim
//! its selector matches at that one moment, each into a member VolumeSnapshot that names
//! the group (`status.volumeGroupSnapshotName`, an owner reference) and its claim
//! (`spec.source.persistentVolumeClaimName`), as the external-snapshotter makes them since
//! v8.2; the group and its members are ready after `READY_AFTER_MS`, or the group reports
//! `FAIL_AFTER_CUT`. Members whose group is gone are removed (garbage collection).

use super::controllers::{
    CUT_AFTER_MS, CUT_MS, FAIL_AFTER_CUT, READY_AFTER_MS, SEEN_MS, annotation_ms, copy_dir, now_ms,
    of_kind, parameter, snapshot_dir, time_now_ms, update, volume_dir,
};
use super::{Key, State, record, time_now};
use serde_json::{Value, json};

const GROUP: &str = "groupsnapshot.storage.k8s.io";

fn class_param(st: &State, group: &Value, name: &str) -> Option<String> {
    let class = group
        .pointer("/spec/volumeGroupSnapshotClassName")?
        .as_str()?;
    parameter(st, GROUP, "volumegroupsnapshotclasses", class, name)
}

fn snapshot_key(ns: &str, name: &str) -> Key {
    (
        "snapshot.storage.k8s.io".into(),
        "volumesnapshots".into(),
        ns.into(),
        name.into(),
    )
}

/// The claims of namespace `ns` whose labels hold every pair of `selector`.
fn selected(st: &State, ns: &str, selector: &serde_json::Map<String, Value>) -> Vec<String> {
    of_kind(st, "", "persistentvolumeclaims")
        .into_iter()
        .filter(|k| k.2 == ns)
        .filter(|k| {
            let labels = st.objects[k].pointer("/metadata/labels");
            selector
                .iter()
                .all(|(l, v)| labels.and_then(|ls| ls.get(l)) == Some(v))
        })
        .map(|k| k.3)
        .collect()
}

pub(super) fn group_snapshots(st: &mut State) {
    let keys = of_kind(st, GROUP, "volumegroupsnapshots");
    let now = now_ms();
    for k in &keys {
        let group = st.objects[k].clone();
        let status = group.get("status").cloned().unwrap_or(Value::Null);
        if status.get("readyToUse") == Some(&Value::Bool(true)) || status.get("error").is_some() {
            continue;
        }
        let param_ms = |name: &str| {
            class_param(st, &group, name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut new = group.clone();
        if status.is_null() {
            new["status"] = json!({"readyToUse": false});
            new["metadata"]["annotations"][SEEN_MS] = json!(now.to_string());
            update(st, k, new);
            continue;
        }
        if status.get("creationTime").is_none() {
            if now < annotation_ms(&group, SEEN_MS) + param_ms(CUT_AFTER_MS) {
                continue;
            }
            let selector = group
                .pointer("/spec/source/selector/matchLabels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let claims = selected(st, &k.2, &selector);
            if selector.is_empty() || claims.is_empty() {
                new["status"] = json!({"readyToUse": false, "error": {"message": "no PersistentVolumeClaim matches the group's selector", "time": time_now()}});
                update(st, k, new);
                continue;
            }
            let cut_at = time_now_ms();
            for claim in &claims {
                let member = format!("{}-{claim}", k.3);
                let bytes = copy_dir(
                    &volume_dir(st, &k.2, claim),
                    &snapshot_dir(st, &k.2, &member),
                )
                .unwrap_or_default();
                st.uid += 1;
                st.resource_version += 1;
                let obj = json!({
                    "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                    "metadata": {"name": member, "namespace": k.2,
                                 "uid": format!("00000000-0000-0000-0000-{:012x}", st.uid),
                                 "resourceVersion": st.resource_version.to_string(),
                                 "creationTimestamp": time_now(),
                                 "annotations": {CUT_MS: now.to_string()},
                                 "ownerReferences": [{"apiVersion": format!("{GROUP}/v1beta2"), "kind": "VolumeGroupSnapshot",
                                                      "name": k.3, "uid": group.pointer("/metadata/uid").cloned().unwrap_or_default()}]},
                    "spec": {"source": {"persistentVolumeClaimName": claim}},
                    "status": {"readyToUse": false, "creationTime": cut_at, "restoreSize": bytes.to_string(),
                               "volumeGroupSnapshotName": k.3},
                });
                let key = snapshot_key(&k.2, &member);
                st.objects.insert(key.clone(), obj.clone());
                record(st, "ADDED", &key, &obj);
            }
            new["status"] = json!({"readyToUse": false, "creationTime": cut_at,
                                   "boundVolumeGroupSnapshotContentName": format!("groupsnapcontent-{}", k.3)});
            new["metadata"]["annotations"][CUT_MS] = json!(now.to_string());
            update(st, k, new);
            continue;
        }
        if now < annotation_ms(&group, CUT_MS) + param_ms(READY_AFTER_MS) {
            continue;
        }
        if let Some(message) = class_param(st, &group, FAIL_AFTER_CUT) {
            new["status"]["error"] = json!({"message": message, "time": time_now()});
            update(st, k, new);
            continue;
        }
        new["status"]["readyToUse"] = json!(true);
        update(st, k, new);
        for m in members(st, &k.2, &k.3) {
            let mut snap = st.objects[&m].clone();
            snap["status"]["readyToUse"] = json!(true);
            update(st, &m, snap);
        }
    }
    // Members go with their group.
    let orphans: Vec<Key> = of_kind(st, "snapshot.storage.k8s.io", "volumesnapshots")
        .into_iter()
        .filter(|m| {
            st.objects[m]
                .pointer("/status/volumeGroupSnapshotName")
                .and_then(Value::as_str)
                .is_some_and(|g| {
                    !keys.contains(&(
                        GROUP.into(),
                        "volumegroupsnapshots".into(),
                        m.2.clone(),
                        g.into(),
                    ))
                })
        })
        .collect();
    for m in orphans {
        if let Some(o) = st.objects.remove(&m) {
            st.resource_version += 1;
            record(st, "DELETED", &m, &o);
        }
    }
}

fn members(st: &State, ns: &str, group: &str) -> Vec<Key> {
    of_kind(st, "snapshot.storage.k8s.io", "volumesnapshots")
        .into_iter()
        .filter(|m| {
            m.2 == ns
                && st.objects[m]
                    .pointer("/status/volumeGroupSnapshotName")
                    .and_then(Value::as_str)
                    == Some(group)
        })
        .collect()
}
