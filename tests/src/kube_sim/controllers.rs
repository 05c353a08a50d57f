//! What a cluster's controllers do after a write, done synchronously: objects whose
//! finalizers are gone after a deletion are removed; StatefulSets and Deployments get their
//! pods (Running and Ready at once, no image pulled: an exec in them runs locally).

use super::{Key, State, record, stamp_new, time_now};
use serde_json::{Value, json};

pub(super) fn react(st: &mut State) {
    finish_deletions(st);
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
