//! Local processes (local mode): argv run directly, never through a shell, with a clean
//! environment made of a few basics, the Workload's env, and what the plugin adds.

use super::{BoxRead, BoxWrite, ExecBackend, ExitInfo, RunningProcess, SpawnSpec};
use crate::runtime::bindings::WitError;
use std::collections::BTreeMap;
use std::process::Stdio;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Variables passed through from coffer's own environment (nothing else is: coffer's
/// environment may hold cloud credentials).
const PASSTHROUGH: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME",
];

pub struct LocalExec {
    pub workload: String,
    pub env: BTreeMap<String, String>,
}

#[async_trait::async_trait]
impl ExecBackend for LocalExec {
    async fn spawn(&self, spec: SpawnSpec) -> Result<Box<dyn RunningProcess>, WitError> {
        if let Some(c) = &spec.container {
            return Err(WitError::InvalidArgument(format!(
                "container {c:?}: local workloads have no containers; leave target.container unset"
            )));
        }
        if spec.workload != self.workload {
            return Err(WitError::Denied(format!(
                "workload {:?}: an action may only exec in its own workload ({:?})",
                spec.workload, self.workload
            )));
        }
        let program = &spec.argv[0];
        let mut cmd = Command::new(program);
        cmd.args(&spec.argv[1..]).env_clear();
        for k in PASSTHROUGH {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.envs(&self.env)
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.envs(
            spec.secret_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so killing it also kills what it started.
        .process_group(0);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WitError::NotFound(format!(
                "`{program}` was not found on the PATH of workload {} (install it or set spec.env.PATH)",
                self.workload
            )),
            std::io::ErrorKind::PermissionDenied => {
                WitError::Denied(format!("`{program}` is not executable: {e}"))
            }
            _ => WitError::Io(format!("starting `{program}`: {e}")),
        })?;
        let stderr = child
            .stderr
            .take()
            .map(|err| super::keep_stderr_tail(err, spec.stderr_tail));
        let pgid = child.id();
        Ok(Box::new(LocalProcess {
            child,
            stderr,
            pgid,
            exited: false,
        }))
    }
}

struct LocalProcess {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
    pgid: Option<u32>,
    exited: bool,
}

#[async_trait::async_trait]
impl RunningProcess for LocalProcess {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.child.stdin.take().map(|s| Box::pin(s) as BoxWrite)
    }

    fn take_stdout(&mut self) -> Option<BoxRead> {
        self.child.stdout.take().map(|s| Box::pin(s) as BoxRead)
    }

    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        use std::os::unix::process::ExitStatusExt;
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| WitError::Io(format!("waiting for process: {e}")))?;
        self.exited = true;
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(ExitInfo {
            code: status.code(),
            signal: status.signal(),
            stderr,
        })
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.filter(|_| !self.exited) {
            // SAFETY: plain syscall; the group was created for this child by process_group(0).
            unsafe {
                libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        if !self.exited {
            self.kill();
        }
        if let Some(h) = self.stderr.take() {
            h.abort();
        }
    }
}
