//! The limits one action runs under: defaults, and the Blueprint's overrides of them.

use crate::model::{ActionKind, Limits, parse_duration, parse_size};
use std::time::Duration;

pub const DEFAULT_MEMORY: u64 = 256 << 20;
pub const DEFAULT_CPU: Duration = Duration::from_secs(300);
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
/// Longest quiesce window: long enough for a snapshot cut, short enough that an application
/// paused by a plugin that lost its way recovers soon.
pub const DEFAULT_QUIESCE: Duration = Duration::from_secs(10);
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
    pub quiesce: Duration,
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
            None => ActionKind::parse(action).default_timeout(),
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
            quiesce: match &limits.quiesce {
                Some(s) => parse_duration(s).map_err(|e| format!("spec.limits.quiesce: {e}"))?,
                None => DEFAULT_QUIESCE,
            },
        })
    }
}
