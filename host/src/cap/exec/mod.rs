//! The `exec` interface: processes in a workload. A backend ([`ExecBackend`]) starts them
//! (a local process here, a pod exec on Kubernetes); this module checks grants, resolves
//! secret handles, wires stdio to wasi streams, and records every call.

mod local;
mod pod;
mod wit;

pub use local::LocalExec;
pub use pod::{PodExec, PodTarget, TASK_LABEL, task_label_value};
pub use wit::ProcessHandle;

use crate::runtime::bindings::WitError;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// What to start.
pub struct SpawnSpec {
    pub workload: String,
    pub container: Option<String>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Secret values for the environment; never logged.
    pub secret_env: Vec<(String, Arc<String>)>,
    pub stdin: bool,
    /// Bytes of stderr to keep (the end of it).
    pub stderr_tail: usize,
}

/// How a process ended.
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The end of stderr, with some slack before the tail so a secret cut at the start can
    /// still be recognised and redacted.
    pub stderr: Vec<u8>,
}

pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;
pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;

#[async_trait::async_trait]
pub trait ExecBackend: Send + Sync {
    async fn spawn(&self, spec: SpawnSpec) -> Result<Box<dyn RunningProcess>, WitError>;

    /// Start (or return) the action's task pod; its name is a workload for `spawn`.
    async fn task_pod(
        &self,
        image: &str,
        _claims: &[String],
        _ready_within: std::time::Duration,
    ) -> Result<String, WitError> {
        Err(WitError::Unavailable(format!(
            "a task pod ({image}) needs the kubernetes backend; in local mode, install the tool next to the workload"
        )))
    }
}

/// A started process. Dropping it kills the process.
#[async_trait::async_trait]
pub trait RunningProcess: Send {
    fn take_stdin(&mut self) -> Option<BoxWrite>;
    fn take_stdout(&mut self) -> Option<BoxRead>;
    async fn wait(&mut self) -> Result<ExitInfo, WitError>;
    fn kill(&mut self);
}

/// Slack kept before the stderr tail, so a secret cut by the tail's start is still found.
const TAIL_SLACK: usize = 4096;

/// Read a process's stderr to its end, keeping the last `tail_len` bytes (plus slack).
pub(crate) fn keep_stderr_tail<R>(mut r: R, tail_len: usize) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let keep = tail_len + TAIL_SLACK;
        let mut tail: std::collections::VecDeque<u8> =
            std::collections::VecDeque::with_capacity(keep);
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend(&buf[..n]);
            let excess = tail.len().saturating_sub(keep);
            tail.drain(..excess);
        }
        Vec::from(tail)
    })
}

/// Environment names a plugin may not set: they change what code a process loads.
pub fn forbidden_env(name: &str) -> bool {
    name.is_empty()
        || name.contains('=')
        || name.contains('\0')
        || name.starts_with("LD_")
        || name.starts_with("DYLD_")
}
