//! The action's task pod: one per action, on the subject pod's node, mounting only the
//! subject's claims, with no API token, the subject's user and a locked-down security context.

use super::*;

impl PodExec {
    pub(super) async fn start_task_pod(
        &self,
        image: &str,
        claims: &[String],
        ready_within: Duration,
    ) -> Result<String, WitError> {
        let ns = &self.target.namespace;
        let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        // A task pod works next to the subject's data: its pod's node, its claims, its user.
        let subject_pod = self.resolve_pod().await.ok();
        let own = self.subject_claims(subject_pod.as_ref()).await?;
        for c in claims {
            crate::cap::kube::names::name(c)?;
            if !own.contains(c) {
                return Err(WitError::Denied(format!(
                    "PersistentVolumeClaim {c}: a task pod may mount only the claims of {} ({})",
                    self.target.describe(),
                    if own.is_empty() {
                        "it has none".to_string()
                    } else {
                        own.join(", ")
                    }
                )));
            }
            claims_api
                .get(c)
                .await
                .map_err(|e| err(&format!("PersistentVolumeClaim {ns}/{c}"), e))?;
        }
        // A ReadWriteOnce volume in use can only be mounted on the node that has it.
        let node = subject_pod
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone());
        let volumes: Vec<serde_json::Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let mounts: Vec<serde_json::Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "mountPath": format!("{TASK_MOUNT_ROOT}/{c}")}))
            .collect();
        let (pod_security, container_security) = task_security(subject_pod.as_ref());
        let mut spec = json!({
            "restartPolicy": "Never",
            // Never outlives the action, even if coffer dies.
            "activeDeadlineSeconds": ready_within.as_secs().max(60),
            // No API credentials in a pod that runs a plugin-chosen image.
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": pod_security,
            "containers": [{
                "name": "task",
                "image": image,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"],
                "volumeMounts": mounts,
                "securityContext": container_security,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "2", "memory": "2Gi"}},
            }],
            "volumes": volumes,
        });
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "coffer-task-", "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "coffer", TASK_LABEL: task_label_value(&self.action_set)}},
            "spec": spec,
        }))
        .map_err(|e| WitError::Internal(e.to_string()))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let created = pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| err(&format!("creating a task pod with image {image}"), e))?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let what = format!("task pod with image {image}");
        wait_ready(
            &pods,
            ns,
            &name,
            &what,
            ready_within.min(Duration::from_secs(300)),
        )
        .await?;
        Ok(name)
    }
}

/// Wait until pod `name` (`what` in messages) is Running and Ready; one that ends or is not
/// ready `within` is deleted.
pub(super) async fn wait_ready(
    pods: &Api<Pod>,
    ns: &str,
    name: &str,
    what: &str,
    within: Duration,
) -> Result<(), WitError> {
    let deadline = Instant::now() + within;
    loop {
        let p = pods
            .get(name)
            .await
            .map_err(|e| err(&format!("{what} {ns}/{name}"), e))?;
        if ready(&p) {
            return Ok(());
        }
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        let failed = matches!(phase.as_deref(), Some("Failed" | "Succeeded"));
        if failed || Instant::now() >= deadline {
            let _ = pods.delete(name, &Default::default()).await;
            let why = if failed {
                format!("it ended ({})", phase.unwrap_or_default())
            } else {
                "it was not Running and Ready in time (image pull? scheduling?)".to_string()
            };
            return Err(WitError::Unavailable(format!("{what} {ns}/{name}: {why}")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl PodExec {
    /// The claims the subject uses: those its running pod mounts, else (scaled to zero)
    /// those its pod template names, and a StatefulSet's `<template>-<name>-<n>`.
    async fn subject_claims(&self, pod: Option<&Pod>) -> Result<Vec<String>, WitError> {
        let from_volumes = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName"))
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        };
        if let Some(p) = pod {
            let v = serde_json::to_value(p.spec.as_ref().map(|s| &s.volumes)).unwrap_or_default();
            return Ok(from_volumes(Some(&v)));
        }
        let t = &self.target;
        let ar = crate::cap::kube::client::resource(&t.api_version, &t.kind);
        let owner: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &t.namespace, &ar);
        let o = owner
            .get(&t.name)
            .await
            .map_err(|e| err(&t.describe(), e))?;
        let mut claims = from_volumes(o.data.pointer("/spec/template/spec/volumes"));
        if t.kind == "StatefulSet" {
            let replicas = o
                .data
                .pointer("/spec/replicas")
                .and_then(|r| r.as_u64())
                .unwrap_or(1)
                .max(1);
            for tmpl in o
                .data
                .pointer("/spec/volumeClaimTemplates")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.pointer("/metadata/name").and_then(|n| n.as_str()))
            {
                claims.extend((0..replicas).map(|i| format!("{tmpl}-{}-{i}", t.name)));
            }
        }
        Ok(claims)
    }
}

/// The task pod's security: the subject pod's user and groups (so it reads the data as
/// the workload does), no privilege escalation, no capabilities beyond a root user's file
/// access, the runtime's default seccomp profile.
pub(super) fn task_security(subject: Option<&Pod>) -> (serde_json::Value, serde_json::Value) {
    let pod_ctx = subject
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.security_context.clone());
    let container_user = subject
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.security_context.as_ref())
        .and_then(|c| c.run_as_user);
    let run_as_user = container_user.or(pod_ctx.as_ref().and_then(|c| c.run_as_user));
    let mut pod = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    if let Some(c) = &pod_ctx {
        for (k, v) in [("runAsGroup", c.run_as_group), ("fsGroup", c.fs_group)] {
            if let Some(v) = v {
                pod[k] = json!(v);
            }
        }
    }
    let mut container = json!({"allowPrivilegeEscalation": false});
    match run_as_user {
        Some(uid) if uid != 0 => {
            pod["runAsUser"] = json!(uid);
            container["capabilities"] = json!({"drop": ["ALL"]});
        }
        _ => {
            container["capabilities"] =
                json!({"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]});
        }
    }
    (pod, container)
}
