//! The WIT side of `exec`: grant checks, secret handles, stdio as wasi streams, auditing.

use super::stdin_filter::Preambled;
use super::{Exec, Place, RunningProcess, SpawnSpec, forbidden_env, policy};
use crate::cap::secrets::secret_value;
use crate::cap::{ActionScope, CapView, HostResult};
use crate::wit::abi::exec::{Command, ExitStatus, Host, HostProcess, Output, Process, Target};
use crate::wit::abi::secrets::Secret;
use crate::wit::{RemoteError, WitError, retype};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// A process handle held by a plugin.
pub struct ProcessHandle {
    proc: Box<dyn RunningProcess>,
    program: String,
    timeout: Option<Duration>,
    started: Instant,
}

/// Bytes the host buffers between a process's stdin and the stream that feeds it.
const STDIN_BUDGET: usize = 1 << 20;

type View<'a> = CapView<'a, Exec>;

/// The checks a command passes before it may start, in order: the grant (argv and every
/// environment name, declared and granted), names no grant can allow, the Workload's own
/// variables (a plugin cannot change them), then the argument policy on what the program
/// will do. `secret_names`: the variables that will carry secrets.
pub(crate) fn vet(
    exec: &Exec,
    scope: &ActionScope,
    cmd: &Command,
    secret_names: &[&str],
) -> Result<(Place, policy::Vetted), WitError> {
    let mut env: Vec<(&str, Option<&str>)> = cmd
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    env.extend(secret_names.iter().map(|k| (*k, None)));
    exec.grant.check(&cmd.argv, &env)?;
    if let Some((k, _)) = env.iter().find(|(k, _)| forbidden_env(k)) {
        return Err(WitError::Denied(format!(
            "exec: environment variable {k:?} changes what code the process runs; no grant can allow it"
        )));
    }
    let pinned = exec.backend.workload_env();
    if let Some((k, _)) = env.iter().find(|(k, _)| pinned.contains_key(*k)) {
        return Err(WitError::Denied(format!(
            "exec: {k} is set by the workload's own environment (spec.env); a plugin cannot change it"
        )));
    }
    let at = place(scope, &cmd.target);
    let scratch = exec.backend.scratch(&at);
    let volumes = exec.backend.volumes();
    let vetted = policy::vet(
        &cmd.argv,
        &policy::Input {
            workload_env: &pinned,
            has_secret: !secret_names.is_empty(),
            scratch: scratch.as_deref(),
            volumes: &volumes,
        },
    )
    .map_err(|e| WitError::Denied(format!("exec: {e}")))?;
    Ok((at, vetted))
}

impl View<'_> {
    /// Check ([`vet`]) and start a command; the audit entry is written by the caller.
    async fn start(
        &mut self,
        cmd: &Command,
        secret_env: &[(String, Resource<Secret>)],
    ) -> wasmtime::Result<Result<ProcessHandle, WitError>> {
        let secret_names: Vec<&str> = secret_env.iter().map(|(k, _)| k.as_str()).collect();
        let (at, vetted) = match vet(self.cap, self.scope, cmd, &secret_names) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut secrets = Vec::new();
        for (k, h) in secret_env {
            secrets.push((k.clone(), secret_value(self.table, h)?));
        }
        // A script on psql's stdin is safe only with a psql that honours the host's
        // `\restrict` line: asked once per workload and program.
        if vetted.stdin_preamble.is_some()
            && cmd.stdin
            && !self.cap.backend.simulated()
            && let Err(e) = psql_can_restrict(self.cap, &at, &cmd.argv[0]).await
        {
            return Ok(Err(WitError::Denied(format!("exec: {e}"))));
        }
        let spec = SpawnSpec {
            workload: at.workload,
            container: at.container,
            argv: vetted.argv,
            plugin_argv: cmd.argv.clone(),
            env: cmd.env.clone(),
            secret_env: secrets,
            stdin: cmd.stdin,
            // Kept with room for the longest secret before the tail, so one cut by the
            // tail's start is still recognised and redacted.
            stderr_tail: self.scope.limits.stderr_tail + self.scope.redactor.longest(),
        };
        let proc = match self.cap.backend.spawn(spec).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let proc = match vetted.stdin_preamble {
            Some(pre) if cmd.stdin => Preambled::start(proc, &pre),
            _ => proc,
        };
        Ok(Ok(ProcessHandle {
            proc,
            program: cmd.argv[0].clone(),
            timeout: cmd.timeout_ms.map(Duration::from_millis),
            started: Instant::now(),
        }))
    }
}

/// Run `program --version` (argv built by the host) in `at` and check the psql it names
/// knows `\restrict`; the answer is kept for the call.
async fn psql_can_restrict(exec: &Exec, at: &Place, program: &str) -> Result<(), String> {
    {
        let key = format!(
            "{}|{}|{program}",
            at.workload,
            at.container.as_deref().unwrap_or("")
        );
        if let Some(r) = exec.program_checks.lock().unwrap().get(&key) {
            return r.clone();
        }
        let spec = SpawnSpec {
            workload: at.workload.clone(),
            container: at.container.clone(),
            argv: vec![program.to_string(), "--version".into()],
            plugin_argv: vec![program.to_string(), "--version".into()],
            env: vec![],
            secret_env: vec![],
            stdin: false,
            stderr_tail: 1024,
        };
        let r = async {
            let mut p = exec.backend.spawn(spec).await.map_err(|e| {
                format!(
                    "asking {program} its version: {}",
                    crate::cap::error_text(&e)
                )
            })?;
            let mut out = Vec::new();
            if let Some(r) = p.take_stdout() {
                let _ = r.take(4096).read_to_end(&mut out).await;
            }
            p.wait().await.map_err(|e| {
                format!(
                    "asking {program} its version: {}",
                    crate::cap::error_text(&e)
                )
            })?;
            policy::psql_restricts(&String::from_utf8_lossy(&out))
        }
        .await;
        exec.program_checks.lock().unwrap().insert(key, r.clone());
        r
    }
}

/// Where a target points: the action's workload unless it names another.
fn place(scope: &ActionScope, t: &Target) -> Place {
    Place {
        workload: t
            .workload
            .clone()
            .unwrap_or_else(|| scope.actor.workload.clone()),
        container: t.container.clone(),
    }
}

impl View<'_> {
    /// A scratch file read (to the process's stdout) or written (from its stdin) by a
    /// process the host runs, as a handle; audited.
    async fn file_op(
        &mut self,
        target: Target,
        name: String,
        read: bool,
    ) -> HostResult<Resource<Process>> {
        let started = Instant::now();
        let at = place(self.scope, &target);
        let (cap, program) = if read {
            ("exec.read-file", "coffer:read-file")
        } else {
            ("exec.write-file", "coffer:write-file")
        };
        let made = if read {
            self.cap.backend.read_file(&at, &name).await
        } else {
            self.cap.backend.write_file(&at, &name).await
        };
        let res = made.map(|proc| ProcessHandle {
            proc,
            program: program.to_string(),
            timeout: None,
            started: Instant::now(),
        });
        self.scope.audit(cap, &at.workload, &name, started, &res, 0);
        self.push(res)
    }

    fn push(&mut self, res: Result<ProcessHandle, WitError>) -> HostResult<Resource<Process>> {
        match res {
            Ok(p) => Ok(Ok(retype(&self.table.push(p)?))),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// Wait for a process (within its timeout).
async fn wait_for(scope: &ActionScope, p: &mut ProcessHandle) -> Result<ExitStatus, WitError> {
    let waited = match p.timeout {
        Some(t) => {
            let left = t.saturating_sub(p.started.elapsed());
            match tokio::time::timeout(left, p.proc.wait()).await {
                Ok(r) => r,
                Err(_) => {
                    p.proc.kill();
                    return Err(WitError::Timeout(format!(
                        "`{}` ran longer than its timeout of {} and was killed",
                        p.program,
                        humantime::format_duration(t)
                    )));
                }
            }
        }
        None => p.proc.wait().await,
    }?;
    Ok(ExitStatus {
        code: waited.code,
        signal: waited.signal,
        stderr_tail: scope
            .redactor
            .redact_tail(&waited.stderr, scope.limits.stderr_tail),
    })
}

fn describe_argv(argv: &[String]) -> String {
    // Arguments are the plugin's, not secrets (those go by handle), but keep them short.
    let mut s = argv.join(" ");
    if s.len() > 512 {
        let mut end = 512;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn exit_summary(r: &Result<ExitStatus, WitError>) -> Result<(), WitError> {
    match r {
        Ok(s) if s.code == Some(0) => Ok(()),
        Ok(s) => Err(WitError::Remote(RemoteError {
            system: "process".into(),
            code: s.code.map(|c| c.to_string()),
            message: match (s.code, s.signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (_, Some(sig)) => format!("killed by signal {sig}"),
                _ => "ended abnormally".into(),
            },
            retryable: false,
        })),
        Err(e) => Err(e.clone()),
    }
}

impl Host for View<'_> {
    async fn scratch_dir(&mut self, target: Target) -> HostResult<String> {
        let started = Instant::now();
        let at = place(self.scope, &target);
        let res = self.cap.backend.scratch_dir(&at).await;
        self.scope
            .audit("exec.scratch-dir", &at.workload, "", started, &res, 0);
        Ok(res)
    }

    async fn read_file(&mut self, target: Target, name: String) -> HostResult<Resource<Process>> {
        self.file_op(target, name, true).await
    }

    async fn write_file(&mut self, target: Target, name: String) -> HostResult<Resource<Process>> {
        self.file_op(target, name, false).await
    }

    async fn install_file(
        &mut self,
        target: Target,
        name: String,
        volume: String,
        dest: String,
        replace: bool,
    ) -> HostResult<()> {
        let started = Instant::now();
        let at = place(self.scope, &target);
        let res = self
            .cap
            .backend
            .install_file(&at, &name, &volume, &dest, replace)
            .await;
        let args = format!(
            "{name} -> {volume}:{dest}{}",
            if replace { " (replace)" } else { "" }
        );
        self.scope
            .audit("exec.install-file", &at.workload, &args, started, &res, 0);
        Ok(res)
    }

    async fn task_pod(&mut self, image: String, claims: Vec<String>) -> HostResult<String> {
        let started = Instant::now();
        let scope = self.scope;
        // Ready within what is left of the action's deadline.
        let left = scope.limits.timeout.saturating_sub(scope.started.elapsed());
        let res = match self.cap.grant.check_image(&image) {
            Err(e) => Err(e),
            Ok(()) => self.cap.backend.task_pod(&image, &claims, left).await,
        };
        scope.audit("exec.task-pod", &image, &claims.join(" "), started, &res, 0);
        Ok(res)
    }

    async fn spawn(
        &mut self,
        cmd: Command,
        secret_env: Vec<(String, Resource<Secret>)>,
    ) -> HostResult<Resource<Process>> {
        let started = Instant::now();
        let res = self.start(&cmd, &secret_env).await?;
        let target = cmd.argv.first().cloned().unwrap_or_default();
        self.scope.audit(
            "exec.spawn",
            &target,
            &describe_argv(&cmd.argv),
            started,
            &res,
            0,
        );
        self.push(res)
    }

    async fn run(
        &mut self,
        cmd: Command,
        secret_env: Vec<(String, Resource<Secret>)>,
        stdin: Option<Vec<u8>>,
        max_stdout: u32,
    ) -> HostResult<Output> {
        let started = Instant::now();
        let target = cmd.argv.first().cloned().unwrap_or_default();
        let mut cmd = cmd;
        cmd.stdin = stdin.is_some();
        let res = match self.start(&cmd, &secret_env).await? {
            Err(e) => Err(e),
            Ok(mut p) => {
                let cap = (max_stdout as u64).min(self.scope.limits.captured_output);
                if let (Some(tell), Some(data)) = (p.proc.stdin_length(), stdin.as_ref()) {
                    tell(data.len() as u64);
                }
                let input = p.proc.take_stdin();
                let output = p.proc.take_stdout();
                let feed = async move {
                    if let (Some(mut w), Some(data)) = (input, stdin) {
                        // A process that exits without reading all its input is not an error here.
                        let _ = w.write_all(&data).await;
                        let _ = w.shutdown().await;
                    }
                };
                let read = async move {
                    let mut buf = Vec::new();
                    if let Some(r) = output {
                        r.take(cap + 1)
                            .read_to_end(&mut buf)
                            .await
                            .map_err(|e| WitError::Io(format!("reading stdout: {e}")))?;
                    }
                    Ok::<_, WitError>(buf)
                };
                let ((), stdout) = tokio::join!(feed, read);
                match stdout {
                    Err(e) => Err(e),
                    Ok(out) if out.len() as u64 > cap => {
                        p.proc.kill();
                        Err(WitError::Limit(format!(
                            "exec.run: `{target}` wrote more than {cap} bytes to stdout (spec.limits.capturedOutput); use exec.spawn and location.put for bulk output"
                        )))
                    }
                    Ok(stdout) => wait_for(self.scope, &mut p)
                        .await
                        .map(|status| Output { status, stdout }),
                }
            }
        };
        let summary = res.as_ref().map(|o| o.status.clone()).map_err(Clone::clone);
        let bytes = res.as_ref().map_or(0, |o| o.stdout.len() as u64);
        self.scope.audit(
            "exec.run",
            &target,
            &describe_argv(&cmd.argv),
            started,
            &exit_summary(&summary),
            bytes,
        );
        Ok(res)
    }
}

impl HostProcess for View<'_> {
    async fn take_stdin(
        &mut self,
        h: Resource<Process>,
    ) -> wasmtime::Result<Option<Resource<DynOutputStream>>> {
        let proc = &mut self.table.get_mut(&own(&h))?.proc;
        let Some(w) = proc.take_stdin() else {
            return Ok(None);
        };
        let length = proc.stdin_length();
        let stream: DynOutputStream = Box::new(AsyncWriteStream::new(STDIN_BUDGET, w));
        let stream = self.table.push(stream)?;
        // `location.get-into` this stream knows the length: it tells the process.
        if let Some(tell) = length {
            self.scope
                .stdin_lengths
                .lock()
                .unwrap()
                .insert(stream.rep(), tell);
        }
        Ok(Some(stream))
    }

    async fn take_stdout(
        &mut self,
        h: Resource<Process>,
    ) -> wasmtime::Result<Option<Resource<DynInputStream>>> {
        let proc = &mut self.table.get_mut(&own(&h))?.proc;
        let Some(r) = proc.take_stdout() else {
            return Ok(None);
        };
        let claim = proc.mover_claim();
        // A stream a mover may take must not start reading (and so the process) by itself.
        let stream: DynInputStream = match claim {
            Some(_) => Box::new(super::deferred::LazyInput::new(r)),
            None => Box::new(AsyncReadStream::new(r)),
        };
        let stream = self.table.push(stream)?;
        // `location.put` of this stream may have a mover make it instead.
        if let Some(c) = claim {
            self.scope.movers.lock().unwrap().insert(stream.rep(), c);
        }
        Ok(Some(stream))
    }

    async fn wait(&mut self, h: Resource<Process>) -> HostResult<ExitStatus> {
        let started = Instant::now();
        let p = self.table.get_mut(&own(&h))?;
        let res = wait_for(self.scope, p).await;
        let program = p.program.clone();
        self.scope.audit(
            "process.wait",
            &program,
            "",
            started,
            &exit_summary(&res),
            0,
        );
        Ok(res)
    }

    async fn kill(&mut self, h: Resource<Process>) -> wasmtime::Result<()> {
        let p = self.table.get_mut(&own(&h))?;
        p.proc.kill();
        Ok(())
    }

    async fn drop(&mut self, h: Resource<Process>) -> wasmtime::Result<()> {
        // Dropping the backend process kills it if it is still running.
        self.table.delete(own(&h))?;
        Ok(())
    }
}

/// The process handle behind a WIT `process`.
fn own(h: &Resource<Process>) -> Resource<ProcessHandle> {
    retype(h)
}
