//! What a Store holds for one action.

use super::limits::MemoryLimiter;
use crate::cap::ActionContext;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of guest stderr kept.
const GUEST_STDERR: usize = 4096;

pub struct HostState {
    pub table: ResourceTable,
    /// The guest's stderr (a panic message lands here), bounded; shown when it traps.
    pub guest_stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    pub limiter: MemoryLimiter,
    /// Epoch ticks during which guest code ran (≈ guest CPU time).
    pub cpu_ticks: u64,
    pub ctx: Arc<ActionContext>,
}

impl HostState {
    pub fn new(ctx: Arc<ActionContext>) -> HostState {
        let mut table = ResourceTable::new();
        table.set_max_capacity(ctx.limits.handles);
        let memory = ctx.limits.memory;
        let guest_stderr = MemoryOutputPipe::new(GUEST_STDERR);
        HostState {
            table,
            // Nothing: no preopens, no env, no args, no sockets; stdin closed, stdout
            // discarded, stderr kept (bounded) for trap reports.
            wasi: WasiCtx::builder().stderr(guest_stderr.clone()).build(),
            guest_stderr,
            limiter: MemoryLimiter::new(memory),
            cpu_ticks: 0,
            ctx,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
