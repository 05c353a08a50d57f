//! What a Store holds for one call into a plugin: its parts, listed.

use super::limiter::MemoryLimiter;
use crate::cap::{ActionScope, CapabilitySet, HasCapabilities, Lending, Parts};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of guest stderr kept.
const GUEST_STDERR: usize = 4096;

pub struct PluginState {
    /// Handles of every capability and of wasi:io streams.
    pub table: ResourceTable,
    wasi: WasiCtx,
    /// The guest's stderr (a panic message lands here), bounded; shown when it traps.
    pub guest_stderr: MemoryOutputPipe,
    pub limiter: MemoryLimiter,
    /// Epoch ticks during which guest code ran (≈ guest CPU time).
    pub cpu_ticks: u64,
    pub scope: Arc<ActionScope>,
    pub caps: CapabilitySet,
}

impl PluginState {
    pub fn new(lending: &Lending) -> PluginState {
        let scope = lending.scope.clone();
        let mut table = ResourceTable::new();
        table.set_max_capacity(scope.limits.handles);
        let guest_stderr = MemoryOutputPipe::new(GUEST_STDERR);
        let caps = CapabilitySet::build(&lending.grants, &lending.backends);
        PluginState {
            table,
            // Nothing: no preopens, no env, no args; stdin closed, stdout discarded, stderr
            // kept (bounded) for trap reports; sockets only as `net` grants.
            wasi: crate::cap::net::wasi_ctx(caps.net.gate(), scope.clone(), guest_stderr.clone()),
            guest_stderr,
            limiter: MemoryLimiter::new(scope.limits.memory),
            cpu_ticks: 0,
            caps,
            scope,
        }
    }
}

impl HasCapabilities for PluginState {
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            set: &mut self.caps,
            table: &mut self.table,
            scope: &self.scope,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
