//! The application around the data: a backup captures the workload's own Kubernetes
//! resources — the workload, the Services that select its pods, the ConfigMaps, Secrets,
//! claims and ServiceAccount its pod template references — cleaned of what only made sense
//! on the cluster they came from; a restore into another namespace (or of a deleted
//! workload) recreates those that are missing, keeps those that exist, and waits for the
//! workload to be ready before the data goes in.

use crate::action::CapturedApplication;
use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Annotation on a Namespace: the namespaces (`*` globs, comma-separated) whose restore
/// points may be restored into it. Set by whoever administers the namespace object, which
/// its tenants usually cannot change.
pub const RESTORE_FROM_ANNOTATION: &str = "coffer.dev/restore-from";

/// How long a recreated workload may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Annotations that describe one cluster's state of an object, not the object.
const CLUSTER_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/",
    "pv.kubernetes.io/",
    "volume.beta.kubernetes.io/",
    "volume.kubernetes.io/",
    "control-plane.alpha.kubernetes.io/",
];

/// The namespaced API of any kind, by apiVersion and kind.
pub(super) fn api(client: &Client, ns: &str, api_version: &str, kind: &str) -> Api<DynamicObject> {
    let ar = crate::cap::kube::client::resource(api_version, kind);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Names the pod spec references, by kind.
#[derive(Default)]
struct References {
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    claims: BTreeSet<String>,
}

fn references(spec: &Value) -> References {
    let mut r = References::default();
    let add = |set: &mut BTreeSet<String>, v: &Value| {
        if let Some(n) = v.as_str().filter(|n| !n.is_empty()) {
            set.insert(n.to_string());
        }
    };
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    for c in containers {
        for e in c["env"].as_array().into_iter().flatten() {
            add(&mut r.secrets, &e["valueFrom"]["secretKeyRef"]["name"]);
            add(
                &mut r.config_maps,
                &e["valueFrom"]["configMapKeyRef"]["name"],
            );
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            add(&mut r.secrets, &e["secretRef"]["name"]);
            add(&mut r.config_maps, &e["configMapRef"]["name"]);
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(&mut r.secrets, &v["secret"]["secretName"]);
        add(&mut r.config_maps, &v["configMap"]["name"]);
        add(&mut r.claims, &v["persistentVolumeClaim"]["claimName"]);
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(&mut r.secrets, &s["secret"]["name"]);
            add(&mut r.config_maps, &s["configMap"]["name"]);
        }
    }
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(&mut r.secrets, &s["name"]);
    }
    r
}

/// Capture `workload` (in `ns`) and what it references. Secrets are captured only when the
/// restore point is encrypted (`encrypted`); otherwise they are listed as skipped.
pub async fn capture(
    client: &Client,
    ns: &str,
    workload: &DynamicObject,
    encrypted: bool,
) -> Result<CapturedApplication> {
    let (spec, meta) = pod_template(&workload.data);
    let labels = &meta["labels"];
    let refs = references(spec);
    let mut items: Vec<Value> = Vec::new();
    let mut skipped = Vec::new();
    let fetch = async |api_version: &str, kind: &str, name: &str| -> Result<Option<Value>> {
        let o = api(client, ns, api_version, kind)
            .get_opt(name)
            .await
            .with_context(|| {
                format!("reading {kind} {ns}/{name} for the application's resources")
            })?;
        Ok(o.map(|o| serde_json::to_value(o).unwrap_or_default()))
    };
    let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
    if sa != "default" {
        match fetch("v1", "ServiceAccount", sa).await? {
            Some(v) => items.push(v),
            None => skipped.push(format!("ServiceAccount/{sa}: not found")),
        }
    }
    for name in &refs.secrets {
        if !encrypted {
            skipped.push(format!(
                "Secret/{name}: the Profile does not encrypt, so Secrets are not stored"
            ));
            continue;
        }
        match fetch("v1", "Secret", name).await? {
            Some(v) if v["type"] == "kubernetes.io/service-account-token" => skipped.push(format!(
                "Secret/{name}: a ServiceAccount token, made by the cluster"
            )),
            Some(v) => items.push(v),
            None => skipped.push(format!("Secret/{name}: not found")),
        }
    }
    for name in &refs.config_maps {
        match fetch("v1", "ConfigMap", name).await? {
            Some(v) => items.push(v),
            None => skipped.push(format!("ConfigMap/{name}: not found")),
        }
    }
    for name in &refs.claims {
        match fetch("v1", "PersistentVolumeClaim", name).await? {
            Some(v) => items.push(v),
            None => skipped.push(format!("PersistentVolumeClaim/{name}: not found")),
        }
    }
    // Services that select the workload's pods.
    let services = api(client, ns, "v1", "Service")
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing Services in namespace {ns}"))?;
    for s in services.items {
        let selector = &s.data["spec"]["selector"];
        let selects = selector.as_object().is_some_and(|sel| {
            !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        });
        if selects {
            // A list's items carry no apiVersion and kind.
            let mut v = serde_json::to_value(s)?;
            v["apiVersion"] = json!("v1");
            v["kind"] = json!("Service");
            items.push(v);
        }
    }
    items.push(serde_json::to_value(workload)?);
    let items: Vec<Value> = items.into_iter().map(clean).collect();
    let resources = items.iter().map(kind_name).collect();
    let document =
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
    Ok(CapturedApplication {
        document,
        resources,
        skipped,
    })
}

fn kind_name(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The object as it should be created anew: no identity, version, owner, status or
/// cluster-assigned fields.
fn clean(mut v: Value) -> Value {
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let meta = std::mem::take(&mut v["metadata"]);
    let mut m = json!({"name": meta["name"]});
    if let Some(l) = meta.get("labels") {
        m["labels"] = l.clone();
    }
    if let Some(a) = meta["annotations"].as_object() {
        let kept: serde_json::Map<String, Value> = a
            .iter()
            .filter(|(k, _)| !CLUSTER_ANNOTATIONS.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !kept.is_empty() {
            m["annotations"] = Value::Object(kept);
        }
    }
    v["metadata"] = m;
    let o = v.as_object_mut().expect("an object");
    o.remove("status");
    match kind.as_str() {
        "Service" => {
            let spec = &mut v["spec"];
            let headless = spec["clusterIP"] == "None";
            if let Some(s) = spec.as_object_mut() {
                s.remove("clusterIPs");
                s.remove("healthCheckNodePort");
                if !headless {
                    s.remove("clusterIP");
                }
            }
            for p in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.as_object_mut() {
                    p.remove("nodePort");
                }
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(s) = v.pointer_mut("/spec").and_then(Value::as_object_mut) {
                s.remove("volumeName");
            }
        }
        "ServiceAccount" => {
            if let Some(o) = v.as_object_mut() {
                o.remove("secrets");
            }
        }
        "StatefulSet" => {
            for t in v
                .pointer_mut("/spec/volumeClaimTemplates")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(o) = t.as_object_mut() {
                    o.remove("status");
                }
                if let Some(m) = t.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.remove("creationTimestamp");
                }
            }
        }
        _ => {}
    }
    if let Some(m) = v
        .pointer_mut("/spec/template/metadata")
        .and_then(Value::as_object_mut)
    {
        m.remove("creationTimestamp");
    }
    v
}

/// Whether namespace `target` accepts restores from `source`.
pub async fn check_target(client: &Client, source: &str, target: &str) -> Result<()> {
    if target == source {
        return Ok(());
    }
    if !coffer_manifest::is_dns_label(target) {
        bail!("spec.targetNamespace {target:?} is not a namespace name");
    }
    let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get_opt(target)
        .await
        .with_context(|| format!("reading Namespace {target}"))?
        .ok_or_else(|| {
            anyhow!("namespace {target} does not exist: create it and opt it in (deploy/examples/namespace.yaml) first")
        })?;
    let allowed = ns
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTORE_FROM_ANNOTATION))
        .map(String::as_str)
        .unwrap_or("");
    let ok = allowed
        .split(',')
        .map(str::trim)
        .any(|g| !g.is_empty() && coffer_manifest::glob_matches(g, source));
    if !ok {
        bail!(
            "namespace {target} does not accept restores from namespace {source}: a cluster administrator annotates it {RESTORE_FROM_ANNOTATION}={source} (comma-separated, * globs)"
        );
    }
    Ok(())
}

/// Label on what a restore created: the namespace its restore point came from.
pub const RESTORED_FROM_LABEL: &str = "coffer.dev/restored-from";

/// What became of each resource on a restore.
pub struct Recreated {
    pub created: Vec<String>,
    pub kept: Vec<String>,
}

/// Create each resource of `document` (captured in namespace `source`) that does not exist
/// in `ns`; keep the rest; then wait until the workload (the last item) is ready.
///
/// Into another namespace, the workload must not pick up what that namespace already has:
/// every object it is recreated with or references (ServiceAccount, Secrets, ConfigMaps,
/// claims) must be one a restore from `source` made, or be missing. Otherwise nothing is
/// created and the error names the objects — a restore point's pod template, written by
/// the source namespace's tenant, would otherwise run with the target's Secrets.
pub async fn recreate(
    client: &Client,
    source: &str,
    ns: &str,
    document: &[u8],
) -> Result<Recreated> {
    let doc: Value =
        serde_json::from_slice(document).context("reading the application's resources")?;
    let items = doc["items"]
        .as_array()
        .ok_or_else(|| anyhow!("the application's resources are not a List"))?;
    let workload = items
        .last()
        .ok_or_else(|| anyhow!("the application's resources are empty"))?;
    let elsewhere = ns != source;
    let restored_by_us = |o: &DynamicObject| {
        o.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(RESTORED_FROM_LABEL))
            .is_some_and(|v| v == source)
    };
    // Plan everything before creating anything.
    let mut out = Recreated {
        created: vec![],
        kept: vec![],
    };
    let mut to_create = Vec::new();
    let mut refused = Vec::new();
    let mut listed = BTreeSet::new();
    for item in items {
        let what = kind_name(item);
        let (api_version, kind, name) = identity(item)?;
        listed.insert((kind.clone(), name.clone()));
        match api(client, ns, &api_version, &kind)
            .get_opt(&name)
            .await
            .with_context(|| format!("reading {what} in namespace {ns}"))?
        {
            Some(o) if elsewhere && !restored_by_us(&o) => refused.push(what),
            Some(_) => out.kept.push(what),
            None => to_create.push((api_version, kind, name, item.clone())),
        }
    }
    if elsewhere {
        let (spec, _) = pod_template(workload);
        let refs = references(spec);
        let mut referenced: Vec<(&str, String)> = Vec::new();
        referenced.extend(refs.secrets.into_iter().map(|n| ("Secret", n)));
        referenced.extend(refs.config_maps.into_iter().map(|n| ("ConfigMap", n)));
        referenced.extend(
            refs.claims
                .into_iter()
                .map(|n| ("PersistentVolumeClaim", n)),
        );
        if let Some(sa) = spec["serviceAccountName"]
            .as_str()
            .filter(|s| *s != "default")
        {
            referenced.push(("ServiceAccount", sa.to_string()));
        }
        for (kind, name) in referenced {
            if listed.contains(&(kind.to_string(), name.clone())) {
                continue;
            }
            if let Some(o) = api(client, ns, "v1", kind)
                .get_opt(&name)
                .await
                .with_context(|| format!("reading {kind}/{name} in namespace {ns}"))?
                && !restored_by_us(&o)
            {
                refused.push(format!("{kind}/{name}"));
            }
        }
    }
    if !refused.is_empty() {
        bail!(
            "namespace {ns} already has {}, which the restored workload would use but no restore from namespace {source} made; nothing was created: remove them, or restore into a namespace without them",
            refused.join(", ")
        );
    }
    for (api_version, kind, name, mut item) in to_create {
        let what = format!("{kind}/{name}");
        item["metadata"]["namespace"] = json!(ns);
        item["metadata"]["labels"][RESTORED_FROM_LABEL] = json!(source);
        let obj: DynamicObject = serde_json::from_value(item)?;
        api(client, ns, &api_version, &kind)
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {what} in namespace {ns}"))?;
        out.created.push(what);
    }
    let (api_version, kind, name) = identity(workload)?;
    wait_ready(client, ns, &api_version, &kind, &name).await?;
    Ok(out)
}

/// apiVersion, kind and name of a recorded resource, checked before they go into a URL.
fn identity(item: &Value) -> Result<(String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (api_version, kind, name) = (
        s(&item["apiVersion"]),
        s(&item["kind"]),
        s(&item["metadata"]["name"]),
    );
    let version_ok = api_version.split('/').all(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    });
    if !version_ok
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
        || kind.is_empty()
        || !crate::model::names::is_subdomain(&name)
    {
        bail!(
            "the application's resources hold an invalid entry {:?}",
            kind_name(item)
        );
    }
    Ok((api_version, kind, name))
}

/// The pod spec and metadata of a workload (a Pod's own, or its template's).
pub(super) fn pod_template(workload: &Value) -> (&Value, &Value) {
    match workload["spec"].get("template") {
        Some(t) => (&t["spec"], &t["metadata"]),
        None => (&workload["spec"], &workload["metadata"]),
    }
}

/// Until the workload has a ready replica (a Pod: is Ready).
async fn wait_ready(
    client: &Client,
    ns: &str,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Result<()> {
    let a = api(client, ns, api_version, kind);
    let started = Instant::now();
    loop {
        let o = a
            .get_opt(name)
            .await
            .with_context(|| format!("reading {kind} {ns}/{name}"))?
            .ok_or_else(|| anyhow!("{kind} {ns}/{name} was removed while it was restored"))?;
        let status = &o.data["status"];
        let ready = match kind {
            "Pod" => status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            "DaemonSet" => status["numberReady"].as_u64().unwrap_or(0) > 0,
            _ => status["readyReplicas"].as_u64().unwrap_or(0) > 0,
        };
        if ready {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!(
                "{kind} {ns}/{name} was recreated but has no ready pod after {}s (status: {status}); check its pods' events, then restore again: what exists is kept",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_cover_env_volumes_and_pull_secrets() {
        let spec = json!({
            "containers": [{"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}],
                            "envFrom": [{"secretRef": {"name": "s2"}}, {"configMapRef": {"name": "c2"}}]}],
            "initContainers": [{"envFrom": [{"secretRef": {"name": "s3"}}]}],
            "volumes": [{"secret": {"secretName": "s4"}}, {"configMap": {"name": "c3"}},
                        {"persistentVolumeClaim": {"claimName": "data"}},
                        {"projected": {"sources": [{"secret": {"name": "s5"}}, {"configMap": {"name": "c4"}}]}}],
            "imagePullSecrets": [{"name": "s6"}]
        });
        let r = references(&spec);
        assert_eq!(
            r.secrets.into_iter().collect::<Vec<_>>(),
            ["s1", "s2", "s3", "s4", "s5", "s6"]
        );
        assert_eq!(
            r.config_maps.into_iter().collect::<Vec<_>>(),
            ["c1", "c2", "c3", "c4"]
        );
        assert_eq!(r.claims.into_iter().collect::<Vec<_>>(), ["data"]);
    }

    #[test]
    fn cleaning_drops_what_belongs_to_the_source_cluster() {
        let svc = clean(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "pg", "namespace": "db", "uid": "u", "resourceVersion": "7",
                         "creationTimestamp": "t", "managedFields": [], "labels": {"app": "pg"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}},
            "spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "type": "NodePort",
                     "ports": [{"port": 5432, "nodePort": 30001}], "selector": {"app": "pg"}},
            "status": {"loadBalancer": {}}}));
        assert_eq!(
            svc,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "pg", "labels": {"app": "pg"}, "annotations": {"team": "a"}},
                "spec": {"type": "NodePort", "ports": [{"port": 5432}], "selector": {"app": "pg"}}})
        );
        let headless = clean(json!({"kind": "Service", "metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}));
        assert_eq!(headless["spec"], json!({"clusterIP": "None"}));
        let pvc = clean(json!({"kind": "PersistentVolumeClaim",
            "metadata": {"name": "d", "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": "pv-1", "resources": {}}, "status": {"phase": "Bound"}}));
        assert_eq!(
            pvc,
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "d"}, "spec": {"resources": {}}})
        );
    }
}
