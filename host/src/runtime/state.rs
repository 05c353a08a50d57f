//! What a Store holds for one action.

use super::limits::{MAX_HANDLES, MemoryLimiter};
use crate::cap::ActionContext;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct HostState {
    pub table: ResourceTable,
    wasi: WasiCtx,
    pub limiter: MemoryLimiter,
    /// Epoch ticks during which guest code ran (≈ guest CPU time).
    pub cpu_ticks: u64,
    pub ctx: Arc<ActionContext>,
}

impl HostState {
    pub fn new(ctx: Arc<ActionContext>, memory: u64) -> HostState {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        HostState {
            table,
            // Nothing: no preopens, no env, no args, no sockets; stdio closed or discarded.
            wasi: WasiCtx::builder().build(),
            limiter: MemoryLimiter {
                max: memory,
                hit: None,
            },
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
