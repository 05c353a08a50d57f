//! Processes in a pod (Kubernetes): the subject (a StatefulSet, Deployment, ReplicaSet,
//! DaemonSet or Pod) resolves to one Running and Ready pod, then a container, and the
//! command runs through the API server's exec (websocket, streaming stdin/stdout/stderr,
//! the real exit status).
//!
//! The exec API cannot set environment variables, and putting them in argv would show
//! secrets in the process list and the API server's logs. So when a command has env, it
//! runs under `sh -c`, which first reads one value per variable from stdin (`IFS= read -r
//! NAME` reads byte by byte on a pipe, so the rest of stdin is left to the command),
//! exports them and `exec`s the command. The container needs `sh` for that; values cannot
//! contain a newline.
//!
//! A command's stdin is framed: kwok, and real clusters on the older exec protocols, never
//! deliver the close of stdin, so a restore streaming into `psql` would wait forever. The
//! command runs under `sh -c`, which reads one line first: the number of bytes coming
//! (known when the input is a stored object or a byte string), then runs `head -c N |
//! command`, so the command sees its end of input after exactly N bytes; or `-` (input of
//! unknown length, written by the plugin), then `exec`s the command, which sees the end of
//! input when the stream's close arrives. The container needs `head` for that.

#[path = "pod_attach.rs"]
mod attach;
#[path = "pod_mover.rs"]
mod beside;
#[path = "pod_files.rs"]
mod files;
#[path = "pod_task.rs"]
mod task;

use super::{BoxRead, BoxWrite, ExecBackend, ExitInfo, Place, RunningProcess, SpawnSpec};
use crate::cap::kube::client::err;
use crate::wit::WitError;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, PodSpec};
use kube::Client;
use kube::api::{Api, AttachParams, AttachedProcess, DynamicObject, ListParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use attach::{PodProcess, StdinMode, attach_in};
pub use beside::{MOVER_BIN_DIR, MoverSettings};

/// The subject of an action on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The container when the plugin does not name one (else the pod's
    /// `kubectl.kubernetes.io/default-container`, else its first container).
    pub container: Option<String>,
}

impl PodTarget {
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

pub struct PodExec {
    pub client: Client,
    pub target: PodTarget,
    /// The ActionSet, labelled on its task pod (so a new leader can find and remove it).
    pub action_set: String,
    /// The action's task pod, once started: (name, image).
    task: tokio::sync::Mutex<Option<(String, String)>>,
    /// Scratch directories made for the action: where, in which pod and container.
    scratch: std::sync::Mutex<Vec<files::PodScratch>>,
    /// When the subject's commands run in a mover; none: never.
    movers: Option<MoverSettings>,
    /// The action's mover pod, once started.
    mover: tokio::sync::Mutex<Option<String>>,
}

/// The label naming the ActionSet a task pod belongs to.
pub const TASK_LABEL: &str = "coffer.dev/actionset";
/// The value of [`TASK_LABEL`] for an ActionSet: its name, or (label values are at most 63
/// characters) its start and a digest of the whole.
pub fn task_label_value(action_set: &str) -> String {
    if action_set.len() <= 63 {
        return action_set.to_string();
    }
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(action_set.as_bytes())[..6]);
    let head: String = action_set.chars().take(50).collect();
    format!("{}-{digest}", head.trim_end_matches(['-', '.']))
}

/// Where a task pod mounts each claim.
pub const TASK_MOUNT_ROOT: &str = "/coffer/volumes";

fn ready(p: &Pod) -> bool {
    let Some(s) = &p.status else { return false };
    s.phase.as_deref() == Some("Running")
        && s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .is_none_or(|c| c.status == "True")
        && p.metadata.deletion_timestamp.is_none()
}

/// StatefulSet pods by ordinal (pg-2 before pg-10), others by name.
fn ordinal_key(name: &str) -> (u64, String) {
    let n = name
        .rsplit_once('-')
        .and_then(|(_, o)| o.parse().ok())
        .unwrap_or(u64::MAX);
    (n, name.to_string())
}

impl PodExec {
    pub fn new(client: Client, target: PodTarget, action_set: String) -> PodExec {
        PodExec {
            client,
            target,
            action_set,
            task: Default::default(),
            scratch: Default::default(),
            movers: None,
            mover: Default::default(),
        }
    }

    /// Commands of the subject may run in a mover, as `settings` say.
    pub fn with_movers(mut self, settings: MoverSettings) -> PodExec {
        self.movers = Some(settings);
        self
    }

    /// The pod an exec goes to now (pods come and go, so this is asked per command).
    pub async fn resolve_pod(&self) -> Result<Pod, WitError> {
        let t = &self.target;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &t.namespace);
        if t.kind == "Pod" {
            let p = pods
                .get(&t.name)
                .await
                .map_err(|e| err(&format!("pod {}/{}", t.namespace, t.name), e))?;
            return if ready(&p) {
                Ok(p)
            } else {
                Err(WitError::Unavailable(format!(
                    "pod {}/{} is not Running and Ready",
                    t.namespace, t.name
                )))
            };
        }
        let ar = crate::cap::kube::client::resource(&t.api_version, &t.kind);
        let owner: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &t.namespace, &ar);
        let o = owner
            .get(&t.name)
            .await
            .map_err(|e| err(&t.describe(), e))?;
        let repo_host = (t.kind == "PostgresCluster").then(|| pgo_repo_host(&t.name));
        let labels = repo_host
            .as_ref()
            .or_else(|| o.data.pointer("/spec/selector/matchLabels"))
            .and_then(|m| m.as_object())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                WitError::InvalidArgument(format!(
                    "{} has no spec.selector.matchLabels to find its pods by (matchExpressions are not supported)",
                    t.describe()
                ))
            })?;
        let selector = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(",");
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| err(&format!("listing the pods of {}", t.describe()), e))?;
        let total = list.items.len();
        let mut candidates: Vec<Pod> = list.items.into_iter().filter(ready).collect();
        candidates.sort_by_key(|p| ordinal_key(p.metadata.name.as_deref().unwrap_or_default()));
        candidates.into_iter().next().ok_or_else(|| {
            WitError::Unavailable(format!(
                "{} has no Running and Ready pod ({total} pod(s) match {selector}); scale it up or wait until a pod is ready",
                t.describe()
            ))
        })
    }
}

/// The pods of a PGO cluster's dedicated pgBackRest repository host, where PGO itself runs
/// `pgbackrest info` and where the repository's configuration is complete.
fn pgo_repo_host(cluster: &str) -> serde_json::Value {
    serde_json::json!({
        "postgres-operator.crunchydata.com/cluster": cluster,
        "postgres-operator.crunchydata.com/pgbackrest-dedicated": "",
    })
}

/// The container a PGO repo host runs pgBackRest in.
pub const PGO_REPO_CONTAINER: &str = "pgbackrest";

fn container_of(pod: &Pod, wanted: Option<&str>) -> Result<String, WitError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let default = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .map(String::as_str);
    let spec = pod.spec.clone().unwrap_or_default();
    choose_container(&spec, wanted, default)
        .map(|c| c.name.clone())
        .map_err(|e| WitError::NotFound(format!("pod {name} {e}")))
}

/// The pod annotation naming the container `kubectl exec` picks.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The container a command runs in: `wanted`, else the pod's default container
/// (`default`, from its annotation), else the first.
pub fn choose_container<'a>(
    spec: &'a PodSpec,
    wanted: Option<&str>,
    default: Option<&str>,
) -> Result<&'a Container, String> {
    match wanted.or(default) {
        Some(n) => spec.containers.iter().find(|c| c.name == n).ok_or_else(|| {
            let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
            format!("has no container {n:?} (it has: {})", names.join(", "))
        }),
        None => spec
            .containers
            .first()
            .ok_or_else(|| "has no containers".to_string()),
    }
}

fn shell_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `argv` reading stdin framed by a first line (see the module's docs).
fn framed(argv: &[String]) -> Vec<String> {
    let script = "IFS= read -r coffer_n || exit 125; \
        case $coffer_n in -) exec \"$@\";; ''|*[!0-9]*) exit 125;; esac; \
        command -v head >/dev/null || { echo 'coffer: this container has no head(1), which reading input needs' >&2; exit 125; }; \
        head -c \"$coffer_n\" | \"$@\"";
    let mut out = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "coffer-stdin".into(),
    ];
    out.extend(argv.iter().cloned());
    out
}

/// argv and the stdin preamble carrying the environment.
fn wrap(spec: &SpawnSpec) -> Result<(Vec<String>, Vec<u8>), WitError> {
    let argv = if spec.stdin {
        framed(&spec.argv)
    } else {
        spec.argv.clone()
    };
    let vars: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(
            spec.secret_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .collect();
    if vars.is_empty() {
        return Ok((argv, Vec::new()));
    }
    let mut script = String::new();
    let mut preamble = Vec::new();
    for (k, v) in &vars {
        if !shell_name(k) {
            return Err(WitError::InvalidArgument(format!(
                "environment name {k:?}: in a pod, names must be letters, digits and _"
            )));
        }
        if v.contains('\n') || v.contains('\0') {
            return Err(WitError::InvalidArgument(format!(
                "environment variable {k}: in a pod, values cannot contain a newline"
            )));
        }
        // The container's own variables win over what a plugin sets, as a Workload's do.
        script.push_str(&format!(
            "IFS= read -r coffer_v || exit 125; [ \"${{{k}+set}}\" = set ] || export {k}=\"$coffer_v\"; "
        ));
        preamble.extend_from_slice(v.as_bytes());
        preamble.push(b'\n');
    }
    script.push_str("unset coffer_v; exec \"$@\"");
    let mut wrapped = vec!["sh".into(), "-c".into(), script, "coffer-exec".into()];
    wrapped.extend(argv);
    Ok((wrapped, preamble))
}

#[async_trait::async_trait]
impl ExecBackend for PodExec {
    async fn task_pod(
        &self,
        image: &str,
        claims: &[String],
        ready_within: Duration,
    ) -> Result<String, WitError> {
        let mut task = self.task.lock().await;
        if let Some((name, img)) = task.as_ref() {
            return if img == image {
                Ok(name.clone())
            } else {
                Err(WitError::Conflict(format!(
                    "this action already has a task pod ({name}, image {img}); an action gets one"
                )))
            };
        }
        let name = self.start_task_pod(image, claims, ready_within).await?;
        *task = Some((name.clone(), image.to_string()));
        Ok(name)
    }

    async fn spawn(&self, spec: SpawnSpec) -> Result<Box<dyn RunningProcess>, WitError> {
        let (pod_name, container) = self
            .locate(&spec.workload, spec.container.as_deref())
            .await?;
        let in_task_pod = self.task.lock().await.as_ref().map(|(n, _)| n) == Some(&pod_name);
        // Output of a subject's command may be made by a mover: it starts on first need.
        if self.movers.is_some() && !spec.stdin && !in_task_pod {
            return self.spawn_deferred(spec, pod_name, container).await;
        }
        let (argv, preamble) = wrap(&spec)?;
        let p = self
            .attach(
                &pod_name,
                &container,
                (&spec.argv[0], argv),
                &preamble,
                spec.stdin,
                spec.stderr_tail,
            )
            .await?;
        Ok(Box::new(p))
    }

    fn wants_mover(&self, key: &str) -> bool {
        self.movers.as_ref().is_some_and(|m| m.wants(key))
    }

    async fn run_mover(
        &self,
        spec: SpawnSpec,
        upload: super::MoverUpload,
    ) -> Result<super::MoverRun, WitError> {
        self.run_in_mover(spec, upload).await
    }

    async fn scratch_dir(&self, at: &Place) -> Result<String, WitError> {
        files::scratch_dir(self, at).await
    }

    fn scratch(&self, at: &Place) -> Option<String> {
        files::scratch(self, at)
    }

    async fn read_file(&self, at: &Place, name: &str) -> Result<Box<dyn RunningProcess>, WitError> {
        files::read_file(self, at, name).await
    }

    async fn write_file(
        &self,
        at: &Place,
        name: &str,
    ) -> Result<Box<dyn RunningProcess>, WitError> {
        files::write_file(self, at, name).await
    }

    async fn install_file(
        &self,
        at: &Place,
        name: &str,
        volume: &str,
        dest: &str,
        replace: bool,
    ) -> Result<(), WitError> {
        files::install_file(self, at, name, volume, dest, replace).await
    }
}

impl PodExec {
    /// The pod and container a command for `workload` runs in: the action's task pod, or
    /// the subject's current pod.
    pub(super) async fn locate(
        &self,
        workload: &str,
        container: Option<&str>,
    ) -> Result<(String, String), WitError> {
        let task = self.task.lock().await.as_ref().map(|(n, _)| n.clone());
        if task.as_deref() == Some(workload) {
            return Ok((workload.to_string(), "task".to_string()));
        }
        // The plugin sees the subject's name; the action's own record calls it kind-name.
        let kind = self.target.kind.to_ascii_lowercase();
        let own = [
            self.target.name.clone(),
            format!("{kind}-{}", self.target.name),
            format!("{kind}/{}", self.target.name),
        ];
        if !own.iter().any(|o| o == workload) {
            return Err(WitError::Denied(format!(
                "workload {workload:?}: an action may only exec in its own subject ({}) or its task pod",
                self.target.describe()
            )));
        }
        let pod = self.resolve_pod().await?;
        let container = container_of(&pod, container.or(self.target.container.as_deref()))?;
        Ok((pod.metadata.name.clone().unwrap_or_default(), container))
    }

    /// Start `argv` (`program` as the messages name it) in a container through the API
    /// server's exec; `preamble` is written to its stdin first (the environment, see
    /// [`wrap`]). With `stdin_wanted`, argv must read its input [`framed`].
    pub(super) async fn attach(
        &self,
        pod_name: &str,
        container: &str,
        program: (&str, Vec<String>),
        preamble: &[u8],
        stdin_wanted: bool,
        stderr_tail: usize,
    ) -> Result<PodProcess, WitError> {
        let stdin = if stdin_wanted {
            StdinMode::Framed
        } else {
            StdinMode::None
        };
        attach_in(
            &self.client,
            &self.target.namespace,
            pod_name,
            container,
            program,
            preamble,
            stdin,
            stderr_tail,
        )
        .await
    }
}

impl Drop for PodExec {
    fn drop(&mut self) {
        files::remove_scratch(self);
        // The task pod and the mover pod go with the action.
        let task = self.task.get_mut().take().map(|(name, _)| name);
        let mover = self.mover.get_mut().take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for name in task.into_iter().chain(mover) {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.target.namespace);
                rt.spawn(async move {
                    if let Err(e) = pods.delete(&name, &Default::default()).await {
                        tracing::warn!(pod = %name, error = %e, "removing the action's pod");
                    }
                });
            }
        }
    }
}

/// Copy the plugin's input to the exec stream, after the frame's first line: the length
/// when it was told before the first byte, `0` for no input at all, else `-`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_goes_through_stdin_not_argv() {
        let spec = SpawnSpec {
            workload: "pg".into(),
            container: None,
            argv: vec!["pg_dump".into(), "-Fc".into()],
            env: vec![("PGDATABASE".into(), "shop".into())],
            secret_env: vec![("PGPASSWORD".into(), std::sync::Arc::new("s3 cr'et".into()))],
            plugin_argv: vec![],
            stdin: false,
            stderr_tail: 10,
        };
        let (argv, pre) = wrap(&spec).unwrap();
        assert!(!argv.iter().any(|a| a.contains("s3 cr'et")));
        assert_eq!(&argv[3..], ["coffer-exec", "pg_dump", "-Fc"]);
        assert_eq!(pre, b"shop\ns3 cr'et\n");
        let bad = SpawnSpec {
            env: vec![("A-B".into(), "x".into())],
            ..spec
        };
        assert!(wrap(&bad).is_err());
        assert_eq!(ordinal_key("pg-10").0, 10);
        assert_eq!(task_label_value("backup-pg-x1"), "backup-pg-x1");
        let long = task_label_value(&format!("backup-{}-abcde", "w".repeat(80)));
        assert!(long.len() <= 63 && long.starts_with("backup-www"), "{long}");
        assert!(ordinal_key("pg-2") < ordinal_key("pg-10"));
    }
}
