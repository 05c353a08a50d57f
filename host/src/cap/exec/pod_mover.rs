//! Movers on Kubernetes ([`crate::cap::exec::mover`]): which commands get one, the mover pod, and
//! running a command's upload through it.
//!
//! The mover pod runs next to the subject pod (its node) with the subject container's
//! image and environment (the same `valueFrom` references: the kubelet resolves them, the
//! daemon never reads them) plus the Blueprint's `mover.env`, so the command finds the same
//! tools and credentials and reaches the server over the network. An init container copies
//! this binary from the mover image into an emptyDir. Like a task pod it has no API token,
//! the subject's user, no privilege escalation, a deadline, and the ActionSet's label (a new
//! leader removes it with the rest of an interrupted action).

use super::*;
use crate::cap::exec::mover::Job;
use crate::cap::exec::{MoverRun, MoverUpload};
use crate::storage::keys::stored_key;
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;

/// When and how an action's commands run in a mover.
#[derive(Debug, Clone, Default)]
pub struct MoverSettings {
    /// The image the init container copies `coffer` from.
    pub image: String,
    /// Where the mover container finds `coffer` (the emptyDir the init container fills).
    pub binary: String,
    /// Output at least this large (in the subject's last restore point) goes through a
    /// mover; 0: all.
    pub threshold: u64,
    /// The size of each object in the subject's last restore point, by key.
    pub previous: BTreeMap<String, u64>,
    /// The Blueprint's `mover.env`: variables set in the mover's container (`{subject.ip}`
    /// is the subject pod's IP).
    pub env: BTreeMap<String, String>,
}

/// Where the init container puts `coffer` in a mover pod.
pub const MOVER_BIN_DIR: &str = "/coffer-bin";
/// The label value of `coffer.dev/role` on mover pods.
const ROLE_LABEL: &str = "coffer.dev/role";

impl MoverSettings {
    pub fn wants(&self, key: &str) -> bool {
        self.threshold == 0 || self.previous.get(key).is_some_and(|s| *s >= self.threshold)
    }
}

impl PodExec {
    /// A command of the subject with no input: deferred, so `location.put` of its output
    /// may give it to a mover.
    pub(super) async fn spawn_deferred(
        &self,
        spec: SpawnSpec,
        pod_name: String,
        container: String,
    ) -> Result<Box<dyn RunningProcess>, WitError> {
        let (argv, preamble) = wrap(&spec)?;
        let client = self.client.clone();
        let namespace = self.target.namespace.clone();
        let program = spec.argv[0].clone();
        let tail = spec.stderr_tail;
        let start: crate::cap::exec::deferred::StartFn = Box::new(move || {
            Box::pin(async move {
                let p = attach_in(
                    &client,
                    &namespace,
                    &pod_name,
                    &container,
                    (&program, argv),
                    &preamble,
                    StdinMode::None,
                    tail,
                )
                .await?;
                Ok(Box::new(p) as Box<dyn RunningProcess>)
            })
        });
        Ok(Box::new(crate::cap::exec::Deferred::new(spec, start)))
    }

    pub(super) async fn run_in_mover(
        &self,
        spec: SpawnSpec,
        upload: MoverUpload,
    ) -> Result<MoverRun, WitError> {
        let settings = self.movers.as_ref().ok_or_else(|| {
            WitError::Unavailable("movers are not enabled (coffer daemon --mover-image)".into())
        })?;
        let parts = upload.prefix.parts.clone().ok_or_else(|| {
            WitError::Unavailable(format!(
                "Profile {}: its store has no pre-signed uploads for a mover",
                upload.prefix.profile
            ))
        })?;
        let pod = self.mover_pod(settings, spec.container.as_deref()).await?;
        let mover = attach_in(
            &self.client,
            &self.target.namespace,
            &pod,
            "mover",
            (
                "coffer mover run",
                vec![settings.binary.clone(), "mover".into(), "run".into()],
            ),
            &[],
            StdinMode::Raw,
            8 << 10,
        )
        .await?;
        let encryption = upload.prefix.encryption.as_ref();
        let stored = stored_key(
            &upload.key,
            upload.zstd_level.is_some(),
            encryption.is_some(),
        );
        let path = upload
            .prefix
            .path(&stored)
            .map_err(WitError::InvalidArgument)?;
        let job = Job {
            argv: spec.argv.clone(),
            env: spec
                .env
                .iter()
                .cloned()
                .chain(
                    spec.secret_env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string())),
                )
                .collect(),
            zstd_level: upload.zstd_level,
            recipients: encryption.map(|e| e.recipients_text()).unwrap_or_default(),
            profile: upload.prefix.profile.clone(),
            stderr_tail: spec.stderr_tail,
            ca_pem: parts.ca_pem(),
        };
        tracing::info!(pod = %pod, key = %upload.key, "a mover runs the command and uploads its output");
        let done = crate::cap::exec::mover::drive(
            Box::new(mover),
            &job,
            parts.as_ref(),
            &path,
            &upload.counters,
            &upload.cancel,
        )
        .await
        .map_err(|e| WitError::Io(format!("mover pod {}/{pod}: {e}", self.target.namespace)))?;
        // What the mover says it wrote must be what the store holds.
        let held = upload
            .prefix
            .store
            .head(&path)
            .await
            .map_err(|e| WitError::Io(format!("checking what the mover wrote: {e}")))?;
        if held.size != done.written.stored_size {
            let _ = upload.prefix.store.delete(&path).await;
            return Err(WitError::Io(format!(
                "mover pod {pod} reported {} stored bytes, the store holds {}; the object was removed",
                done.written.stored_size, held.size
            )));
        }
        Ok(MoverRun {
            record: done.written.record(
                &upload.key,
                stored,
                upload.zstd_level,
                encryption.is_some(),
            ),
            exit: done.exit,
            pod,
        })
    }

    /// The action's mover pod, started on first use.
    async fn mover_pod(
        &self,
        settings: &MoverSettings,
        container: Option<&str>,
    ) -> Result<String, WitError> {
        let mut slot = self.mover.lock().await;
        if let Some(name) = slot.as_ref() {
            return Ok(name.clone());
        }
        let ns = &self.target.namespace;
        let subject = self.resolve_pod().await?;
        let subject_name = subject.metadata.name.clone().unwrap_or_default();
        let spec = subject.spec.clone().unwrap_or_default();
        let default = subject
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
            .map(String::as_str);
        let c = choose_container(
            &spec,
            container.or(self.target.container.as_deref()),
            default,
        )
        .map_err(|e| WitError::NotFound(format!("pod {subject_name} {e}")))?;
        let image = c.image.clone().ok_or_else(|| {
            WitError::InvalidArgument(format!(
                "container {} of pod {subject_name} has no image",
                c.name
            ))
        })?;
        let ip = subject.status.as_ref().and_then(|s| s.pod_ip.clone());
        let mut env: Vec<serde_json::Value> = c
            .env
            .iter()
            .flatten()
            .filter(|e| !settings.env.contains_key(&e.name))
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .collect();
        for (k, v) in &settings.env {
            let value = if v.contains("{subject.ip}") {
                let ip = ip.as_deref().ok_or_else(|| {
                    WitError::Unavailable(format!("pod {subject_name} has no IP yet"))
                })?;
                v.replace("{subject.ip}", ip)
            } else {
                v.clone()
            };
            env.push(json!({"name": k, "value": value}));
        }
        let (pod_security, container_security) = task::task_security(Some(&subject));
        let bin = json!([{"name": "coffer-bin", "mountPath": MOVER_BIN_DIR}]);
        let mut pod_spec = json!({
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 24 * 3600,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": pod_security,
            "initContainers": [{
                "name": "coffer",
                "image": settings.image,
                "command": ["/coffer", "mover", "install", format!("{MOVER_BIN_DIR}/coffer")],
                "volumeMounts": bin,
                "securityContext": container_security,
            }],
            "containers": [{
                "name": "mover",
                "image": image,
                "command": [settings.binary, "mover", "idle"],
                "env": env,
                "envFrom": serde_json::to_value(&c.env_from).unwrap_or_default(),
                "volumeMounts": [{"name": "coffer-bin", "mountPath": MOVER_BIN_DIR, "readOnly": true}],
                "securityContext": container_security,
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                              "limits": {"cpu": "2", "memory": "1Gi"}},
            }],
            "volumes": [{"name": "coffer-bin", "emptyDir": {"sizeLimit": "256Mi"}}],
        });
        if let Some(n) = spec.node_name.as_ref() {
            pod_spec["nodeName"] = json!(n);
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "coffer-mover-", "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "coffer",
                                    ROLE_LABEL: "mover",
                                    TASK_LABEL: task_label_value(&self.action_set)}},
            "spec": pod_spec,
        }))
        .map_err(|e| WitError::Internal(e.to_string()))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let created = pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| err("creating a mover pod", e))?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let what = format!("mover pod with image {image}");
        task::wait_ready(&pods, ns, &name, &what, Duration::from_secs(300))
            .await
            .map_err(|e| match e {
                WitError::Unavailable(m) => WitError::Unavailable(format!(
                    "{m}; check coffer daemon --mover-image (or leave it unset to stream through the daemon)"
                )),
                other => other,
            })?;
        *slot = Some(name.clone());
        Ok(name)
    }
}
