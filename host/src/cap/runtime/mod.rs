//! The `runtime` interface: plugin logs, progress, checkpoints and cancellation, all kept
//! on the action's scope, and (ABI 0.2.0) guards and the quiesce window ([`guard`],
//! [`quiesce`]). Logs and the rest need no grant; a guard's command is checked as an exec.
//! It also links `types`, the interface every other one shares, and runtime 0.1.0 for
//! plugins built against it.

mod guard;
mod quiesce;

pub use guard::{
    GUARD_TIMEOUT, Guards, Undo, fire_recorded, recorded_spec, run_command, send_request,
};
pub use quiesce::Quiesce;

use super::exec::Exec;
use super::signed_http::SignedHttp;
use super::{Backends, CapView, Capability, Grants, HasCap, HostResult};
use crate::limits::MAX_LOG_MESSAGE;
use crate::model::{GuardRecord, GuardState, LogLine};
use crate::redact::clip;
use crate::wit::WitError;
use crate::wit::abi::{exec::Command, runtime, signed_http, types, v0_1};
use runtime::{Guard, Host, HostGuard, Level};
use std::time::Instant;
use wasmtime::component::{Linker, Resource};

/// One call's runtime: the exec it checks and runs guards' commands with, and the
/// signed-http it checks and sends request guards with.
pub struct Runtime {
    exec: Exec,
    http: SignedHttp,
}

impl Capability for Runtime {
    fn build(grants: &Grants, backends: &Backends) -> Runtime {
        Runtime {
            exec: Exec::build(grants, backends),
            http: SignedHttp::build(grants, backends),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        types::add_to_linker::<T, HasCap<Runtime>>(linker, get)?;
        runtime::add_to_linker::<T, HasCap<Runtime>>(linker, get)?;
        v0_1::runtime::add_to_linker::<T, HasCap<Runtime>>(linker, get)
    }
}

/// The index a guard handle stands for in the scope's [`Guards`].
pub struct GuardHandle(usize);

impl types::Host for CapView<'_, Runtime> {}

impl CapView<'_, Runtime> {
    fn log_line(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let ctx = self.scope;
        // Past the cap a flood costs nothing but a counter: no formatting, no output.
        if ctx.logs_full() {
            return;
        }
        let message = ctx.redactor.redact(clip(&message, MAX_LOG_MESSAGE));
        let fields: std::collections::BTreeMap<String, String> = fields
            .iter()
            .take(32)
            .map(|(k, v)| {
                (
                    clip(k, 128).to_string(),
                    ctx.redactor.redact(clip(v, MAX_LOG_MESSAGE)),
                )
            })
            .collect();
        let plugin = ctx.actor.plugin.as_str();
        let rendered = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            Level::Trace => tracing::trace!(plugin, "{message} {rendered}"),
            Level::Debug => tracing::debug!(plugin, "{message} {rendered}"),
            Level::Info => tracing::info!(plugin, "{message} {rendered}"),
            Level::Warn => tracing::warn!(plugin, "{message} {rendered}"),
            Level::Error => tracing::error!(plugin, "{message} {rendered}"),
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
        .to_string();
        ctx.record_log(LogLine {
            at_ms: ctx.elapsed_ms(),
            level,
            message,
            fields,
        });
    }
}

impl Host for CapView<'_, Runtime> {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.log_line(level, message, fields);
        Ok(())
    }

    async fn progress(
        &mut self,
        step: String,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        *self.scope.progress.step.lock().unwrap() =
            Some((clip(&step, 256).to_string(), done, total));
        Ok(())
    }

    async fn checkpoint(&mut self, state: String) -> wasmtime::Result<()> {
        // Bounded like a log message; a plugin that needs more should store an object.
        let state = clip(&state, 64 << 10).to_string();
        self.scope.records.lock().unwrap().checkpoint = Some(self.scope.redactor.redact(&state));
        Ok(())
    }

    async fn cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.scope.is_cancelled())
    }

    async fn add_guard(&mut self, name: String, cmd: Command) -> HostResult<Resource<Guard>> {
        let started = Instant::now();
        let name = clip(&name, 256).to_string();
        let res = self.register_guard(&name, &cmd).await;
        let args = cmd.argv.join(" ");
        self.scope
            .audit("runtime.add-guard", &name, &args, started, &res, 0);
        Ok(match res {
            Ok(i) => Ok(crate::wit::retype(&self.table.push(GuardHandle(i))?)),
            Err(e) => Err(e),
        })
    }

    async fn add_request_guard(
        &mut self,
        name: String,
        signer: String,
        req: signed_http::Request,
    ) -> HostResult<Resource<Guard>> {
        let started = Instant::now();
        let name = clip(&name, 256).to_string();
        let res = match self.cap.http.guard_request(&signer, &req) {
            Ok(request) => self.register_request(&name, request).await,
            Err(e) => Err(e),
        };
        let args = format!("signer={signer} {} {}", req.method, req.url);
        self.scope
            .audit("runtime.add-request-guard", &name, &args, started, &res, 0);
        Ok(match res {
            Ok(i) => Ok(crate::wit::retype(&self.table.push(GuardHandle(i))?)),
            Err(e) => Err(e),
        })
    }

    async fn quiesce_begin(&mut self) -> HostResult<()> {
        let started = Instant::now();
        let res = self
            .scope
            .quiesce
            .begin(self.scope)
            .map_err(WitError::InvalidArgument);
        self.scope
            .audit("runtime.quiesce-begin", "", "", started, &res, 0);
        if res.is_ok() {
            tracing::info!(
                limit_ms = self.scope.limits.quiesce.as_millis() as u64,
                "the application is quiesced"
            );
            self.scope.persist().await;
        }
        Ok(res)
    }

    async fn quiesce_end(&mut self) -> HostResult<u64> {
        let started = Instant::now();
        let res = self.scope.quiesce.end(self.scope);
        let res = res.map_err(|e| {
            if self.scope.quiesce.expired.is_cancelled() {
                WitError::Limit(e)
            } else {
                WitError::InvalidArgument(e)
            }
        });
        self.scope
            .audit("runtime.quiesce-end", "", "", started, &res, 0);
        if let Ok(ms) = res {
            tracing::info!(window_ms = ms, "the application runs again");
            self.scope.persist().await;
        }
        Ok(res)
    }
}

impl CapView<'_, Runtime> {
    /// Check a guard's command, keep it, and record it before the plugin may go on.
    async fn register_guard(&mut self, name: &str, cmd: &Command) -> Result<usize, WitError> {
        let spec = self.cap.exec.guard_spec(self.scope, cmd)?;
        let timeout = cmd
            .timeout_ms
            .map_or(GUARD_TIMEOUT, std::time::Duration::from_millis);
        let record = GuardRecord {
            name: name.to_string(),
            command: spec.argv.clone(),
            request: None,
            env: spec.env.iter().cloned().collect(),
            workload: spec.workload.clone(),
            container: spec.container.clone(),
            state: GuardState::Armed,
            registered_ms: self.scope.elapsed_ms(),
            ended_ms: None,
            fired_by: None,
            result: None,
            seal: None,
        };
        let undo = Undo::Command {
            spec,
            backend: Some(self.cap.exec.backend()),
        };
        self.keep(record, undo, timeout).await
    }

    /// A request guard: its record and what it sends.
    async fn register_request(
        &mut self,
        name: &str,
        request: crate::model::GuardRequest,
    ) -> Result<usize, WitError> {
        let record = GuardRecord {
            name: name.to_string(),
            command: Vec::new(),
            request: Some(request.clone()),
            env: Default::default(),
            workload: self.scope.actor.workload.clone(),
            container: None,
            state: GuardState::Armed,
            registered_ms: self.scope.elapsed_ms(),
            ended_ms: None,
            fired_by: None,
            result: None,
            seal: None,
        };
        let undo = Undo::Request {
            request,
            signers: self.cap.http.ready_signers(),
        };
        self.keep(record, undo, GUARD_TIMEOUT).await
    }

    /// Seal and keep a guard, and record it before the plugin may go on.
    async fn keep(
        &mut self,
        mut record: GuardRecord,
        undo: Undo,
        timeout: std::time::Duration,
    ) -> Result<usize, WitError> {
        if self.scope.quiesce.expired.is_cancelled() {
            return Err(WitError::Limit(super::runtime::Quiesce::limit_message(
                self.scope,
            )));
        }
        record.seal = self.scope.guard_sealer.get().map(|seal| seal(&record));
        let i = self
            .scope
            .guards
            .add(record, undo, timeout)
            .map_err(WitError::Limit)?;
        if let Err(e) = self.scope.try_persist().await {
            self.scope.guards.forget(i);
            return Err(WitError::Io(format!(
                "the guard could not be recorded on the ActionSet, so do not take the step it guards: {e:#}"
            )));
        }
        Ok(i)
    }
}

impl HostGuard for CapView<'_, Runtime> {
    async fn fire(&mut self, guard: Resource<Guard>) -> HostResult<()> {
        let i = self
            .table
            .get(&crate::wit::retype::<_, GuardHandle>(&guard))?
            .0;
        let res = self.scope.guards.fire(self.scope, i, "plugin").await;
        Ok(res.map_err(|message| {
            WitError::Remote(crate::wit::RemoteError {
                system: "guard".into(),
                code: None,
                message,
                retryable: false,
            })
        }))
    }

    async fn disarm(&mut self, guard: Resource<Guard>) -> wasmtime::Result<()> {
        let started = Instant::now();
        let i = self
            .table
            .get(&crate::wit::retype::<_, GuardHandle>(&guard))?
            .0;
        let name = self.scope.guards.name(i);
        if self.scope.guards.disarm(i, self.scope.elapsed_ms()) {
            self.scope
                .audit::<()>("runtime.guard.disarm", &name, "", started, &Ok(()), 0);
            self.scope.persist().await;
        }
        Ok(())
    }

    async fn drop(&mut self, guard: Resource<Guard>) -> wasmtime::Result<()> {
        // The guard stays armed: dropping a handle is not undoing what it guards.
        self.table
            .delete(crate::wit::retype::<_, GuardHandle>(&guard))?;
        Ok(())
    }
}

/// Runtime 0.1.0, for plugins built against it: the same calls, its own types.
impl v0_1::runtime::Host for CapView<'_, Runtime> {
    async fn log(
        &mut self,
        level: v0_1::runtime::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        use v0_1::runtime::Level as L;
        let level = match level {
            L::Trace => Level::Trace,
            L::Debug => Level::Debug,
            L::Info => Level::Info,
            L::Warn => Level::Warn,
            L::Error => Level::Error,
        };
        self.log_line(level, message, fields);
        Ok(())
    }

    async fn progress(
        &mut self,
        step: String,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        Host::progress(self, step, done, total).await
    }

    async fn checkpoint(&mut self, state: String) -> wasmtime::Result<()> {
        Host::checkpoint(self, state).await
    }

    async fn cancelled(&mut self) -> wasmtime::Result<bool> {
        Host::cancelled(self).await
    }
}
