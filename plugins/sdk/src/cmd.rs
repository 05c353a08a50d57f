//! A builder over `exec.spawn` / `exec.run`.

use crate::exec::{self, Command, ExitStatus, Output, Process, Target};
use crate::location::{ObjectInfo, PutOptions, Store};
use crate::secrets::Secret;
use crate::types::{Error, RemoteError};

/// A command to run in the workload (no shell: argv as given).
pub struct Cmd<'a> {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    secret_env: Vec<(String, &'a Secret)>,
    target: Target,
    stdin: bool,
    timeout_ms: Option<u64>,
}

impl<'a> Cmd<'a> {
    /// A command: the program and its first arguments, run in the action's workload. Its
    /// argv (and every variable it is given) must match an exec pattern of the manifest and
    /// of the Blueprint's grants.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            secret_env: Vec::new(),
            target: Target {
                workload: None,
                container: None,
            },
            stdin: false,
            timeout_ms: None,
        }
    }
    /// One more argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(a.into());
        self
    }
    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }
    /// An environment variable (the grant must allow its name; the Workload's own
    /// variables win, and some names are refused whatever the grants say).
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Put a secret into the process environment (nothing when `s` is `None`, so an optional
    /// secret passes straight through); the plugin never sees its value.
    pub fn secret_env(mut self, k: impl Into<String>, s: Option<&'a Secret>) -> Self {
        if let Some(s) = s {
            self.secret_env.push((k.into(), s));
        }
        self
    }
    /// On Kubernetes, the container to run in (else the workload's default container).
    pub fn container(mut self, c: impl Into<String>) -> Self {
        self.target.container = Some(c.into());
        self
    }
    /// Run in another workload of the action (a task pod's name, from `exec::task_pod`).
    pub fn workload(mut self, w: impl Into<String>) -> Self {
        self.target.workload = Some(w.into());
        self
    }
    /// Open a stdin stream (take it with `Process::take_stdin`).
    pub fn stdin(mut self) -> Self {
        self.stdin = true;
        self
    }
    /// Kill the process if it runs longer than this (`wait` then fails with `timeout`).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    fn command(&self) -> Command {
        Command {
            target: self.target.clone(),
            argv: self.argv.clone(),
            env: self.env.clone(),
            stdin: self.stdin,
            timeout_ms: self.timeout_ms,
        }
    }

    fn secrets(&self) -> Vec<(String, &'a Secret)> {
        self.secret_env.clone()
    }

    /// Start the process; read and write it through the returned handle (`take_stdout`,
    /// `take_stdin`, `wait`, `kill`). A process still running when the action ends is killed.
    pub fn spawn(&self) -> Result<Process, Error> {
        exec::spawn(&self.command(), &self.secrets())
    }

    /// Register this command as a guard named `name` (what it undoes, e.g. `thaw /data`):
    /// the host runs it when the action ends, however it ends, unless it is fired or
    /// disarmed first. Register the guard *before* the step it undoes (`fsfreeze -u` before
    /// `fsfreeze -f`): it is recorded on the ActionSet before this returns, so even a host
    /// that dies leaves it to the next coffer to run. A guard takes no stdin or secrets.
    pub fn guard(&self, name: &str) -> Result<crate::runtime::Guard, Error> {
        crate::runtime::add_guard(name, &self.command())
    }

    /// Run to completion with `stdin` (if any) as its input, capturing at most `max_stdout`
    /// bytes of stdout (more is a `limit` error: use `stdout_to` for bulk output). Fails
    /// unless it exits 0, with an error naming the program, its exit code and the end of its
    /// stderr (see `check_exit`).
    pub fn run(&self, stdin: Option<&[u8]>, max_stdout: u32) -> Result<Vec<u8>, Error> {
        let Output { status, stdout } = self.output(stdin, max_stdout)?;
        check_exit(&self.argv[0], &status)?;
        Ok(stdout)
    }

    /// Like [`run`](Self::run), but any exit is returned with what it printed: for tools
    /// whose non-zero exit is an answer (`medusa status` of a backup that does not exist).
    pub fn output(&self, stdin: Option<&[u8]>, max_stdout: u32) -> Result<Output, Error> {
        exec::run(&self.command(), &self.secrets(), stdin, max_stdout)
    }
}

impl Cmd<'_> {
    /// Run, streaming stdout into `key` of `store` (the host compresses, hashes and uploads;
    /// the bytes never enter the plugin). Both the process and the upload must succeed; a
    /// failed process is reported as the cause, not the upload it cut short.
    pub fn stdout_to(
        &self,
        store: &Store,
        key: &str,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, Error> {
        let proc = self.spawn()?;
        let stdout = proc
            .take_stdout()
            .ok_or_else(|| crate::internal("process has no stdout"))?;
        let transfer = store.put(key, stdout, opts)?;
        let status = proc.wait()?;
        let uploaded = transfer.wait();
        check_exit(&self.argv[0], &status)?;
        uploaded
    }

    /// Run with stdin fed from the object at `key` (verified against its checksum as it
    /// streams). Both must succeed; a failed download is reported as the cause of whatever
    /// the process then said about its truncated input.
    pub fn stdin_from(&self, store: &Store, key: &str) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.stdin = true;
        let proc = exec::spawn(&cmd, &self.secrets())?;
        let stdin = proc
            .take_stdin()
            .ok_or_else(|| crate::internal("process has no stdin"))?;
        let fed = store.get_into(key, stdin)?.wait();
        let status = proc.wait()?;
        fed?;
        check_exit(&self.argv[0], &status)
    }
}

/// An error unless the process exited 0; the error carries the program name, the exit code
/// and the tail of stderr.
pub fn check_exit(program: &str, status: &ExitStatus) -> Result<(), Error> {
    match (status.code, status.signal) {
        (Some(0), _) => Ok(()),
        (code, signal) => {
            let how = match (code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                (None, None) => "ended abnormally".to_string(),
            };
            let tail = status.stderr_tail.trim();
            let message = if tail.is_empty() {
                how
            } else {
                format!("{how}: {tail}")
            };
            Err(Error::Remote(RemoteError {
                system: program.to_string(),
                code: code.map(|c| c.to_string()),
                message,
                retryable: false,
            }))
        }
    }
}
