//! Sandbox limits: defaults, the Blueprint's overrides, and the memory limiter.

use crate::model::{Limits, parse_duration, parse_size};
use std::time::Duration;

pub const DEFAULT_MEMORY: u64 = 256 << 20;
pub const DEFAULT_CPU: Duration = Duration::from_secs(300);
/// K10's defaults for hooks, backup, restore and delete.
pub fn default_timeout(action: &str) -> Duration {
    let minutes = match action {
        "backup" => 45,
        "restore" => 600,
        "delete" => 45,
        _ => 20,
    };
    Duration::from_secs(minutes * 60)
}
/// Live handles (processes, streams, transfers, stores, secrets) per action.
pub const DEFAULT_HANDLES: usize = 1024;
/// Bytes the host will lift from guest arguments in one call.
pub const DEFAULT_HOSTCALL_PAYLOAD: u64 = 16 << 20;
/// Captured stdout of `exec.run` and bytes of `get-bytes`/`put-bytes`.
pub const DEFAULT_CAPTURED_OUTPUT: u64 = 16 << 20;
/// stderr tail kept per process.
pub const DEFAULT_STDERR_TAIL: u64 = 8 << 10;
/// Plugin log lines recorded on the ActionSet (the rest are counted and dropped).
pub const DEFAULT_LOG_LINES: usize = 1000;
pub const MAX_LOG_MESSAGE: usize = 4 << 10;
pub const MAX_AUDIT: usize = 10_000;
/// Bytes of audit entries kept per action: small enough for a Kubernetes object's status.
pub const MAX_AUDIT_BYTES: usize = 512 << 10;
/// Bytes kept of each audited field (plugin-supplied: a flood must not grow the record).
pub const MAX_AUDIT_TARGET: usize = 512;
pub const MAX_AUDIT_ARGS: usize = 1024;
pub const MAX_AUDIT_RESULT: usize = 2048;

/// Limits in force for one action.
#[derive(Debug, Clone)]
pub struct EffectiveLimits {
    pub memory: u64,
    pub cpu: Duration,
    pub timeout: Duration,
    pub handles: usize,
    pub captured_output: u64,
    pub hostcall_payload: u64,
    pub log_lines: usize,
    pub stderr_tail: usize,
}

impl EffectiveLimits {
    /// Defaults overridden by a Blueprint's `spec.limits`. Errors name the field.
    pub fn resolve(limits: &Limits, action: &str) -> Result<EffectiveLimits, String> {
        let memory = match &limits.memory {
            Some(s) => parse_size(s).map_err(|e| format!("spec.limits.memory: {e}"))?,
            None => DEFAULT_MEMORY,
        };
        let cpu = match &limits.cpu {
            Some(s) => parse_duration(s).map_err(|e| format!("spec.limits.cpu: {e}"))?,
            None => DEFAULT_CPU,
        };
        let timeout = match limits.timeouts.get(action) {
            Some(s) => {
                parse_duration(s).map_err(|e| format!("spec.limits.timeouts.{action}: {e}"))?
            }
            None => default_timeout(action),
        };
        let size = |v: &Option<String>, field: &str, default: u64| match v {
            Some(s) => parse_size(s).map_err(|e| format!("spec.limits.{field}: {e}")),
            None => Ok(default),
        };
        Ok(EffectiveLimits {
            memory,
            cpu,
            timeout,
            handles: limits.handles.map_or(DEFAULT_HANDLES, |h| h as usize),
            captured_output: size(
                &limits.captured_output,
                "capturedOutput",
                DEFAULT_CAPTURED_OUTPUT,
            )?,
            hostcall_payload: size(
                &limits.hostcall_payload,
                "hostcallPayload",
                DEFAULT_HOSTCALL_PAYLOAD,
            )?,
            log_lines: limits.log_lines.map_or(DEFAULT_LOG_LINES, |n| n as usize),
            stderr_tail: size(&limits.stderr_tail, "stderrTail", DEFAULT_STDERR_TAIL)? as usize,
        })
    }
}

/// Bytes a table element is charged: a funcref is a pointer.
const TABLE_ELEMENT_BYTES: u64 = 8;
/// Linear memories and tables one Store may create. A component holds a few core instances
/// (each with its memory and tables); more than this is not a plugin built by a normal
/// toolchain.
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps the guest's memory: one total over every linear memory and table of the Store, since
/// a component may hold several core instances, each with memories of its own (a limit per
/// memory would let 8 memories take 8 times the limit). Remembers what was asked when it
/// refuses, so the error can say which limit was hit.
pub struct MemoryLimiter {
    pub max: u64,
    pub hit: Option<u64>,
    /// Bytes granted so far, over all memories and tables.
    total: u64,
    /// The last growth granted, taken back if wasmtime then fails it (e.g. past the
    /// memory's own maximum).
    pending: u64,
}

impl MemoryLimiter {
    pub fn new(max: u64) -> MemoryLimiter {
        MemoryLimiter {
            max,
            hit: None,
            total: 0,
            pending: 0,
        }
    }

    /// Bytes granted so far over every memory and table.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn grow(&mut self, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        let after = self.total.saturating_add(delta);
        if after > self.max {
            self.hit = Some(after);
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        self.total = after;
        self.pending = delta;
        Ok(true)
    }

    fn grow_failed(&mut self) {
        self.total = self.total.saturating_sub(self.pending);
        self.pending = 0;
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64)
    }
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }
    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_limit_is_one_total_over_every_memory() {
        let mut l = MemoryLimiter::new(100 << 20);
        // Eight memories of 12 MiB each fit (96 MiB); a ninth does not.
        for _ in 0..8 {
            assert!(l.memory_growing(0, 12 << 20, None).unwrap());
        }
        assert!(l.memory_growing(0, 12 << 20, None).is_err());
        assert_eq!(l.hit, Some(108 << 20));
        // Growing one of them counts only the growth.
        let mut l = MemoryLimiter::new(100 << 20);
        assert!(l.memory_growing(0, 60 << 20, None).unwrap());
        assert!(l.memory_growing(60 << 20, 90 << 20, None).unwrap());
        assert!(l.memory_growing(90 << 20, 101 << 20, None).is_err());
        // A growth wasmtime fails afterwards is taken back.
        let mut l = MemoryLimiter::new(100 << 20);
        assert!(l.memory_growing(0, 80 << 20, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("past the memory's maximum"))
            .unwrap();
        assert_eq!(l.total(), 0);
        // Tables count too.
        let mut l = MemoryLimiter::new(512 << 10);
        assert!(l.table_growing(0, 100_000, None).is_err());
    }
}
