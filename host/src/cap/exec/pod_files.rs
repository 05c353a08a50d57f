//! Host file operations in a pod: the action's scratch directory, files streamed out of and
//! into it, and a file installed into a volume the container mounts. Each runs as a command
//! the host builds (never the plugin), with paths the host checked.

use super::PodExec;
use crate::cap::exec::policy::scratch_name;
use crate::cap::exec::{Place, RunningProcess};
use crate::wit::WitError;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

/// A scratch directory made in a pod.
pub struct PodScratch {
    at: Place,
    pod: String,
    container: String,
    dir: String,
}

/// Bytes of stderr kept from the host's own commands.
const TAIL: usize = 4096;

/// Run a host-built command to its end: exit code, stdout (64 KiB at most), stderr tail.
async fn run_status(
    exec: &PodExec,
    pod: &str,
    container: &str,
    argv: &[&str],
) -> Result<(Option<i32>, String, String), WitError> {
    let mut p = exec
        .attach(
            pod,
            container,
            (argv[0], argv.iter().map(|a| a.to_string()).collect()),
            &[],
            false,
            TAIL,
        )
        .await?;
    let mut stdout = Vec::new();
    if let Some(r) = p.take_stdout() {
        use tokio::io::AsyncReadExt;
        let _ = r.take(1 << 16).read_to_end(&mut stdout).await;
    }
    let status = p.wait().await?;
    Ok((
        status.code,
        String::from_utf8_lossy(&stdout).trim().to_string(),
        String::from_utf8_lossy(&status.stderr).trim().to_string(),
    ))
}

async fn run(
    exec: &PodExec,
    pod: &str,
    container: &str,
    argv: &[&str],
) -> Result<String, WitError> {
    match run_status(exec, pod, container, argv).await? {
        (Some(0), out, _) => Ok(out),
        (code, _, err) => Err(WitError::Io(format!(
            "`{}` in pod {pod} container {container} failed ({code:?}): {err}",
            argv.join(" ")
        ))),
    }
}

pub async fn scratch_dir(exec: &PodExec, at: &Place) -> Result<String, WitError> {
    if let Some(dir) = scratch(exec, at) {
        return Ok(dir);
    }
    let (pod, container) = exec.locate(&at.workload, at.container.as_deref()).await?;
    // mktemp -d makes it 0700, with a name nobody can guess.
    let dir = run(
        exec,
        &pod,
        &container,
        &["mktemp", "-d", "/tmp/coffer-scratch.XXXXXXXXXX"],
    )
    .await?;
    let suffix = dir.strip_prefix("/tmp/coffer-scratch.").unwrap_or_default();
    if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(WitError::Internal(format!("mktemp printed {dir:?}")));
    }
    exec.scratch.lock().unwrap().push(PodScratch {
        at: at.clone(),
        pod,
        container,
        dir: dir.clone(),
    });
    Ok(dir)
}

pub fn scratch(exec: &PodExec, at: &Place) -> Option<String> {
    exec.scratch
        .lock()
        .unwrap()
        .iter()
        .find(|s| &s.at == at)
        .map(|s| s.dir.clone())
}

/// The pod, container and path of scratch file `name`.
fn file(exec: &PodExec, at: &Place, name: &str) -> Result<(String, String, String), WitError> {
    if !scratch_name(name) {
        return Err(WitError::InvalidArgument(format!(
            "{name:?} is not a plain file name (no `/`, not `.` or `..`)"
        )));
    }
    let guard = exec.scratch.lock().unwrap();
    let s = guard.iter().find(|s| &s.at == at).ok_or_else(|| {
        WitError::NotFound(
            "this action has no scratch directory here yet (exec.scratch-dir)".into(),
        )
    })?;
    Ok((
        s.pod.clone(),
        s.container.clone(),
        format!("{}/{name}", s.dir),
    ))
}

pub async fn read_file(
    exec: &PodExec,
    at: &Place,
    name: &str,
) -> Result<Box<dyn RunningProcess>, WitError> {
    let (pod, container, path) = file(exec, at, name)?;
    let argv = vec!["cat".to_string(), "--".into(), path];
    Ok(Box::new(
        exec.attach(&pod, &container, ("cat", argv), &[], false, TAIL)
            .await?,
    ))
}

pub async fn write_file(
    exec: &PodExec,
    at: &Place,
    name: &str,
) -> Result<Box<dyn RunningProcess>, WitError> {
    let (pod, container, path) = file(exec, at, name)?;
    // noclobber: an existing file (or a symlink a tool left) is never written through.
    let argv = super::framed(&[
        "sh".to_string(),
        "-c".into(),
        "set -C; umask 077; cat > \"$1\"".into(),
        "coffer-write".into(),
        path,
    ]);
    Ok(Box::new(
        exec.attach(&pod, &container, ("cat", argv), &[], true, TAIL)
            .await?,
    ))
}

/// The mount path of the container's volumeMount named `volume`.
async fn mount_path(
    exec: &PodExec,
    pod: &str,
    container: &str,
    volume: &str,
) -> Result<String, WitError> {
    let pods: Api<Pod> = Api::namespaced(exec.client.clone(), &exec.target.namespace);
    let p = pods
        .get(pod)
        .await
        .map_err(|e| crate::cap::kube::client::err(&format!("pod {pod}"), e))?;
    let mounts: Vec<(String, String)> = p
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == container)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    mounts
        .iter()
        .find(|(n, _)| n == volume)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            WitError::NotFound(format!(
                "container {container} of pod {pod} mounts no volume {volume:?} (it mounts: {})",
                mounts
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

pub async fn install_file(
    exec: &PodExec,
    at: &Place,
    name: &str,
    volume: &str,
    dest: &str,
    replace: bool,
) -> Result<(), WitError> {
    if !scratch_name(dest) || dest.starts_with('.') {
        return Err(WitError::InvalidArgument(format!(
            "{dest:?} is not a plain file name"
        )));
    }
    let (pod, container, src) = file(exec, at, name)?;
    let dir = mount_path(exec, &pod, &container, volume).await?;
    // Copied beside the target under a temporary name, then renamed (replace) or hard-linked
    // (which fails on an existing file): a half-written file never has the final name.
    let script = r#"set -e; tmp="$2/.$3.coffer-$$"; cp -- "$1" "$tmp"; chmod 0640 "$tmp"
if [ "$4" = replace ]; then mv -f -- "$tmp" "$2/$3"; exit 0; fi
if ln -- "$tmp" "$2/$3" 2>/dev/null; then rm -f -- "$tmp"; exit 0; fi
rm -f -- "$tmp"; exit 17"#;
    let mode = if replace { "replace" } else { "keep" };
    let argv = ["sh", "-c", script, "coffer-install", &src, &dir, dest, mode];
    match run_status(exec, &pod, &container, &argv).await? {
        (Some(0), _, _) => Ok(()),
        (Some(17), _, _) => Err(WitError::Conflict(format!(
            "{dir}/{dest} in pod {pod} exists; it is replaced only when asked to"
        ))),
        (code, _, err) => Err(WitError::Io(format!(
            "installing {dest} into {dir} of pod {pod} failed ({code:?}): {err}"
        ))),
    }
}

/// Remove the action's scratch directories (the backend is going away with the action).
pub fn remove_scratch(exec: &mut PodExec) {
    let dirs: Vec<PodScratch> = std::mem::take(exec.scratch.get_mut().unwrap());
    if dirs.is_empty() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let this = PodExec::new(
        exec.client.clone(),
        exec.target.clone(),
        exec.action_set.clone(),
    );
    rt.spawn(async move {
        for s in dirs {
            if let Err(e) = run(&this, &s.pod, &s.container, &["rm", "-rf", "--", &s.dir]).await {
                tracing::warn!(pod = %s.pod, dir = %s.dir, error = ?e, "removing a scratch directory");
            }
        }
    });
}
