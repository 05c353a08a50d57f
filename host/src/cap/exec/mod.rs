//! The `exec` interface: processes in a workload. A backend ([`ExecBackend`]) starts them
//! (a local process here, a pod exec on Kubernetes); this module checks grants, resolves
//! secret handles, wires stdio to wasi streams, and records every call.

pub mod deferred;
mod files;
mod grant;
mod local;
pub mod mover;
mod pod;
pub mod policy;
pub mod profile_repo;
pub mod run_as;
pub mod scripted;
mod stdin_filter;
mod wit;

pub use deferred::{Deferred, MoverClaim, MoverStart};
pub use grant::ExecGrant;
pub use local::LocalExec;
pub use pod::{
    DEFAULT_CONTAINER_ANNOTATION, MOVER_BIN_DIR, MoverSettings, PGO_REPO_CONTAINER, PodExec,
    PodTarget, TASK_LABEL, choose_container, task_label_value,
};
pub use wit::ProcessHandle;

use super::{Backends, CapView, Capability, Grants, HasCap};
use crate::wit::WitError;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime::component::Linker;

/// One call's exec: its grant, the mode's backend, and what it learned about the
/// workload's programs (whether its psql honours `\restrict`), by workload and program.
pub struct Exec {
    grant: ExecGrant,
    backend: Arc<dyn ExecBackend>,
    program_checks: Mutex<BTreeMap<String, Result<(), String>>>,
}

impl Capability for Exec {
    fn build(grants: &Grants, backends: &Backends) -> Exec {
        Exec {
            grant: ExecGrant::new(grants),
            // Without a workload (describe), processes start nowhere useful: nothing is
            // granted then anyway.
            backend: backends.get::<Arc<dyn ExecBackend>>().unwrap_or_else(|| {
                Arc::new(LocalExec::new(
                    String::new(),
                    BTreeMap::new(),
                    BTreeMap::new(),
                ))
            }),
            program_checks: Mutex::default(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        crate::wit::abi::exec::add_to_linker::<T, HasCap<Exec>>(linker, get)
    }
}

impl Exec {
    /// What a guard (`runtime.add-guard`) will run: `cmd` checked as `exec.run` checks it.
    /// A guard takes no stdin and no secrets: the host may run it from another process,
    /// after the plugin is gone.
    pub fn guard_spec(
        &self,
        scope: &super::ActionScope,
        cmd: &crate::wit::abi::exec::Command,
    ) -> Result<SpawnSpec, WitError> {
        if cmd.stdin {
            return Err(WitError::InvalidArgument(
                "a guard's command takes no stdin: the host may run it after the plugin is gone"
                    .into(),
            ));
        }
        let (at, vetted) = wit::vet(self, scope, cmd, &[])?;
        Ok(SpawnSpec {
            workload: at.workload,
            container: at.container,
            argv: vetted.argv,
            plugin_argv: cmd.argv.clone(),
            env: cmd.env.clone(),
            secret_env: vec![],
            stdin: false,
            stderr_tail: scope.limits.stderr_tail,
        })
    }

    /// The backend processes start on (a guard keeps it to run later).
    pub fn backend(&self) -> Arc<dyn ExecBackend> {
        self.backend.clone()
    }
}

/// What to start.
#[derive(Clone)]
pub struct SpawnSpec {
    pub workload: String,
    pub container: Option<String>,
    /// What runs: the plugin's argv as the argument policy let it through (with what the
    /// host adds, e.g. MariaDB's `--sandbox`).
    pub argv: Vec<String>,
    /// What the plugin asked for (grants were checked on this; the test harness's scripts
    /// match it).
    pub plugin_argv: Vec<String>,
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

/// Where a host file operation happens: a workload (and container) of the action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub workload: String,
    pub container: Option<String>,
}

#[async_trait::async_trait]
pub trait ExecBackend: Send + Sync {
    async fn spawn(&self, spec: SpawnSpec) -> Result<Box<dyn RunningProcess>, WitError>;

    /// A simulation that runs no program (the test harness): nothing to ask a program about.
    fn simulated(&self) -> bool {
        false
    }

    /// The Workload's own environment: it wins over what a plugin sets, and it pins the
    /// servers a tool given a secret may talk to (PGHOST, MYSQL_HOST, …).
    fn workload_env(&self) -> std::collections::BTreeMap<String, String> {
        Default::default()
    }

    /// Values the host puts in processes' env that the plugin must never see (a Profile's
    /// keys handed to pgBackRest): redacted from everything the plugin reads.
    fn secret_values(&self) -> Vec<String> {
        Vec::new()
    }

    /// The Workload's volumes: the directories a tool may restore into.
    fn volumes(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// The action's scratch directory in `at`, made (private, 0700) on first use and
    /// removed with everything in it when the backend is dropped at the action's end.
    async fn scratch_dir(&self, at: &Place) -> Result<String, WitError>;

    /// The scratch directory of `at` if one was made.
    fn scratch(&self, at: &Place) -> Option<String>;

    /// A process (run by the host) that writes scratch file `name` to its stdout.
    async fn read_file(&self, at: &Place, name: &str) -> Result<Box<dyn RunningProcess>, WitError>;

    /// A process (run by the host) that writes its stdin to scratch file `name`.
    async fn write_file(&self, at: &Place, name: &str)
    -> Result<Box<dyn RunningProcess>, WitError>;

    /// Move scratch file `name` to `dest` in the workload's volume `volume`, atomically;
    /// an existing `dest` is replaced only with `replace`.
    async fn install_file(
        &self,
        at: &Place,
        name: &str,
        volume: &str,
        dest: &str,
        replace: bool,
    ) -> Result<(), WitError>;

    /// Whether output stored as `key` should be made by a mover beside the workload
    /// ([`crate::cap::exec::mover`]), for a process that offers one ([`RunningProcess::mover_claim`]).
    fn wants_mover(&self, _key: &str) -> bool {
        false
    }

    /// Run `spec` in a mover that stores its output as `upload` says.
    async fn run_mover(&self, spec: SpawnSpec, _upload: MoverUpload) -> Result<MoverRun, WitError> {
        Err(WitError::Unavailable(format!(
            "`{}`: movers need the kubernetes backend",
            spec.argv.first().map(String::as_str).unwrap_or_default()
        )))
    }

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
    /// Where to say, before the first byte, how many bytes stdin will carry, for a process
    /// that needs to know (a pod exec frames its input by it: kwok and the older exec
    /// protocols never deliver the close of stdin). At most once; none when not needed.
    fn stdin_length(&mut self) -> Option<StdinLength> {
        None
    }
    fn take_stdout(&mut self) -> Option<BoxRead>;
    /// For a process not started yet whose output a mover may make instead: the claim
    /// `location.put` of its stdout uses ([`Deferred`]).
    fn mover_claim(&mut self) -> Option<MoverClaim> {
        None
    }
    async fn wait(&mut self) -> Result<ExitInfo, WitError>;
    fn kill(&mut self);
}

/// What a mover uploads: the object `key` under `prefix`, counted and cancellable as the
/// transfer that asked for it.
pub struct MoverUpload {
    pub prefix: crate::storage::Prefix,
    pub key: String,
    pub zstd_level: Option<i32>,
    pub counters: crate::storage::pipeline::Counters,
    pub cancel: tokio_util::sync::CancellationToken,
}

/// What a mover made: the object's record, how the command ended, and where it ran.
pub struct MoverRun {
    pub record: crate::model::ObjectRecord,
    pub exit: ExitInfo,
    pub pod: String,
}

/// Told the exact number of bytes a process's stdin will carry.
pub type StdinLength = Box<dyn FnOnce(u64) + Send>;

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

/// Environment names a plugin may never set, whatever a grant says: they change what code a
/// process loads or runs, or where it looks for programs.
pub fn forbidden_env(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "GCONV_PATH",
        "LOCPATH",
        "HOSTALIASES",
        "RES_OPTIONS",
        "MALLOC_CONF",
        "PSQLRC",
        "PGSERVICEFILE",
        "PGSYSCONFDIR",
        "PGPASSFILE",
        "PGSERVICE",
        "MYSQL_HOME",
        "MARIADB_HOME",
        "MYSQL_TEST_LOGIN_FILE",
        "LIBMYSQL_PLUGIN_DIR",
        "LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN",
        "REDISCLI_HISTFILE",
        "REDISCLI_RCFILE",
        "HOME",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "GIT_EXEC_PATH",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "PSQL_PAGER",
        "PSQL_EDITOR",
        "SHELL",
    ];
    !coffer_manifest::is_env_name(name)
        || NAMES.contains(&name)
        || name.starts_with("LD_")
        || name.starts_with("DYLD_")
        || name.starts_with("BASH_FUNC_")
        || name.starts_with("PERL")
        || name.starts_with("PYTHON")
        || name.starts_with("GLIBC_")
        || name.starts_with("MALLOC_")
}
