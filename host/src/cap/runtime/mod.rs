//! The `runtime` interface: plugin logs, progress, checkpoints and cancellation, all kept
//! on the action's scope. It holds no state of its own and needs no grant. It also links
//! `types`, the interface every other one shares.

use super::{Backends, CapView, Capability, Grants, HasCap};
use crate::limits::MAX_LOG_MESSAGE;
use crate::model::LogLine;
use crate::redact::clip;
use crate::wit::coffer::blueprint::{runtime, types};
use runtime::{Host, Level};
use wasmtime::component::Linker;

pub struct Runtime;

impl Capability for Runtime {
    fn build(_: &Grants, _: &Backends) -> Runtime {
        Runtime
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        types::add_to_linker::<T, HasCap<Runtime>>(linker, get)?;
        runtime::add_to_linker::<T, HasCap<Runtime>>(linker, get)
    }
}

impl types::Host for CapView<'_, Runtime> {}

impl Host for CapView<'_, Runtime> {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let ctx = self.scope;
        // Past the cap a flood costs nothing but a counter: no formatting, no output.
        if ctx.logs_full() {
            return Ok(());
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
}
