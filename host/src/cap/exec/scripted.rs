//! An exec backend that runs nothing: each command is answered from a script (stdout,
//! stderr, exit code), and what the plugin sent to its stdin is kept for the checks.

use crate::cap::exec::{
    BoxRead, BoxWrite, ExecBackend, ExitInfo, Place, RunningProcess, SpawnSpec,
};
use crate::wit::WitError;
use serde::Deserialize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The answer to commands whose argv matches `argv` (a grant pattern: `*` one argument,
/// `**` any number, globs within an argument).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecScript {
    pub argv: String,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub exit: i32,
    /// `true`: the program is not installed (the spawn fails as a missing tool would).
    #[serde(default)]
    pub missing: bool,
}

/// One command the plugin ran.
#[derive(Debug, Clone)]
pub struct ExecCall {
    pub argv: Vec<String>,
    /// Names (not values) of the secrets put in its environment.
    pub secret_env: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Arc<Mutex<Vec<u8>>>,
}

pub struct ScriptedExec {
    scripts: Vec<ExecScript>,
    /// Answer every command with exit 0 and no output (`coffer plugin run --dry-run`).
    permissive: bool,
    pub calls: Mutex<Vec<ExecCall>>,
    scratch_made: Mutex<bool>,
    /// The Workload's env the policy sees.
    env: std::collections::BTreeMap<String, String>,
}

impl ScriptedExec {
    pub fn new(scripts: Vec<ExecScript>) -> ScriptedExec {
        ScriptedExec {
            scripts,
            permissive: false,
            calls: Mutex::new(Vec::new()),
            scratch_made: Mutex::new(false),
            env: Default::default(),
        }
    }

    pub fn permissive() -> ScriptedExec {
        ScriptedExec {
            scripts: Vec::new(),
            permissive: true,
            calls: Mutex::new(Vec::new()),
            scratch_made: Mutex::new(false),
            env: Default::default(),
        }
    }
}

impl ScriptedExec {
    pub fn with_env(mut self, env: std::collections::BTreeMap<String, String>) -> ScriptedExec {
        self.env = env;
        self
    }
}

/// The scratch directory the harness reports; its files are scripted like commands.
pub const SCRATCH: &str = "/scratch/coffer-scratch.test";

impl ScriptedExec {
    /// A host file operation, answered from the script like a command: `coffer:read-file
    /// PATH`, `coffer:write-file PATH`, `coffer:install-file PATH VOLUME DEST [replace]`.
    async fn pseudo(
        &self,
        at: &Place,
        argv: Vec<String>,
        stdin: bool,
    ) -> Result<Box<dyn RunningProcess>, WitError> {
        self.spawn(SpawnSpec {
            workload: at.workload.clone(),
            container: at.container.clone(),
            plugin_argv: argv.clone(),
            argv,
            env: vec![],
            secret_env: vec![],
            stdin,
            stderr_tail: 4096,
        })
        .await
    }
}

#[async_trait::async_trait]
impl ExecBackend for ScriptedExec {
    fn simulated(&self) -> bool {
        true
    }

    fn workload_env(&self) -> std::collections::BTreeMap<String, String> {
        self.env.clone()
    }

    async fn scratch_dir(&self, _at: &Place) -> Result<String, WitError> {
        *self.scratch_made.lock().unwrap() = true;
        Ok(SCRATCH.into())
    }

    fn scratch(&self, _at: &Place) -> Option<String> {
        self.scratch_made
            .lock()
            .unwrap()
            .then(|| SCRATCH.to_string())
    }

    async fn read_file(&self, at: &Place, name: &str) -> Result<Box<dyn RunningProcess>, WitError> {
        self.pseudo(
            at,
            vec!["coffer:read-file".into(), format!("{SCRATCH}/{name}")],
            false,
        )
        .await
    }

    async fn write_file(
        &self,
        at: &Place,
        name: &str,
    ) -> Result<Box<dyn RunningProcess>, WitError> {
        self.pseudo(
            at,
            vec!["coffer:write-file".into(), format!("{SCRATCH}/{name}")],
            true,
        )
        .await
    }

    async fn install_file(
        &self,
        at: &Place,
        name: &str,
        volume: &str,
        dest: &str,
        replace: bool,
    ) -> Result<(), WitError> {
        let mut argv = vec![
            "coffer:install-file".to_string(),
            format!("{SCRATCH}/{name}"),
            volume.to_string(),
            dest.to_string(),
        ];
        if replace {
            argv.push("replace".into());
        }
        let mut p = self.pseudo(at, argv, false).await?;
        let st = p.wait().await?;
        match st.code {
            Some(0) => Ok(()),
            _ => Err(WitError::Conflict(format!(
                "{volume}:{dest}: {}",
                String::from_utf8_lossy(&st.stderr)
            ))),
        }
    }

    async fn spawn(&self, spec: SpawnSpec) -> Result<Box<dyn RunningProcess>, WitError> {
        let stdin = Arc::new(Mutex::new(Vec::new()));
        self.calls.lock().unwrap().push(ExecCall {
            argv: spec.plugin_argv.clone(),
            secret_env: spec.secret_env.iter().map(|(k, _)| k.clone()).collect(),
            env: spec.env.clone(),
            stdin: stdin.clone(),
        });
        let script = match self
            .scripts
            .iter()
            .find(|s| coffer_manifest::argv_matches(&s.argv, &spec.plugin_argv))
        {
            Some(s) => s.clone(),
            None if self.permissive => ExecScript {
                argv: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                exit: 0,
                missing: false,
            },
            None => {
                return Err(WitError::NotFound(format!(
                    "the test script has no answer for `{}`; add an exec entry whose argv pattern matches it",
                    spec.plugin_argv.join(" ")
                )));
            }
        };
        if script.missing {
            return Err(WitError::NotFound(format!(
                "`{}` was not found on the PATH of workload {} (scripted)",
                spec.argv[0], spec.workload
            )));
        }
        Ok(Box::new(ScriptedProcess {
            stdin: spec.stdin.then_some(stdin),
            stdout: Some(script.stdout.into_bytes()),
            exit: script.exit,
            stderr: script.stderr.into_bytes(),
        }))
    }
}

struct ScriptedProcess {
    stdin: Option<Arc<Mutex<Vec<u8>>>>,
    stdout: Option<Vec<u8>>,
    exit: i32,
    stderr: Vec<u8>,
}

#[async_trait::async_trait]
impl RunningProcess for ScriptedProcess {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin
            .take()
            .map(|buf| Box::pin(Collect(buf)) as BoxWrite)
    }
    fn take_stdout(&mut self) -> Option<BoxRead> {
        self.stdout
            .take()
            .map(|b| Box::pin(std::io::Cursor::new(b)) as BoxRead)
    }
    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        Ok(ExitInfo {
            code: Some(self.exit),
            signal: None,
            stderr: self.stderr.clone(),
        })
    }
    fn kill(&mut self) {}
}

/// A stdin that keeps what it is given.
struct Collect(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Collect {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
