//! Capabilities the host lends plugins. Each is one unit: its WIT interface (wit/), a
//! backend trait with local (and later kubernetes) implementations, and the grant check.
//!
//! [`ActionContext`] is what every capability call sees: the grants, the subject, the
//! backends, and the records the call leaves (audit trail, logs, progress, objects).
//! A call is allowed only when the plugin's manifest declares it AND the Blueprint grants it.

pub mod exec;
pub mod kube;
pub mod location;
mod others;
mod runtime_log;
pub mod secrets;
pub mod snapshot;
pub mod streams;

use crate::model::{AuditEntry, LogLine, ObjectRecord};
use crate::redact::Redactor;
use crate::redact::clip;
use crate::runtime::EffectiveLimits;
use crate::runtime::bindings::{RemoteError, WitError};
use crate::runtime::limits::{
    MAX_AUDIT, MAX_AUDIT_ARGS, MAX_AUDIT_BYTES, MAX_AUDIT_RESULT, MAX_AUDIT_TARGET,
};
use coffer_manifest::{Capabilities, LocationAccess};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Everything one action's capability calls share.
pub struct ActionContext {
    pub action: String,
    pub blueprint: String,
    pub plugin_name: String,
    /// The local workload the action runs on.
    pub workload: String,
    pub declared: Capabilities,
    pub granted: Capabilities,
    pub exec: Arc<dyn exec::ExecBackend>,
    /// The cluster, in kubernetes mode; [`kube::NoCluster`] in local mode.
    pub kube: Arc<dyn kube::KubeBackend>,
    /// Volume snapshots: CSI on Kubernetes; [`snapshot::NoSnapshots`] in local mode.
    pub snapshots: Arc<dyn snapshot::SnapshotBackend>,
    /// Locations by logical name.
    pub locations: BTreeMap<String, Arc<location::LocationBinding>>,
    pub secrets: secrets::SecretValues,
    pub redactor: Redactor,
    /// The limits in force (defaults overridden by the Blueprint).
    pub limits: EffectiveLimits,
    pub started: Instant,
    pub cancelled: AtomicBool,
    pub progress: Progress,
    pub records: Mutex<Records>,
    /// Called with every audit entry as it is recorded (`coffer plugin run`'s live trace).
    pub on_audit: std::sync::OnceLock<AuditHook>,
    /// What the exec capability learned about a workload's programs this action (whether
    /// its psql honours `\restrict`), by workload and program.
    pub exec_checks: Mutex<BTreeMap<String, Result<(), String>>>,
}

pub type AuditHook = Arc<dyn Fn(&AuditEntry) + Send + Sync>;

/// Live progress, polled by the CLI's progress bar.
#[derive(Default)]
pub struct Progress {
    /// Bytes moved by transfers (uncompressed).
    pub bytes: Arc<AtomicU64>,
    pub step: Mutex<Option<(String, u64, Option<u64>)>>,
}

impl Progress {
    pub fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }
}

/// What the action leaves on its ActionSet.
#[derive(Default)]
pub struct Records {
    pub audit: Vec<AuditEntry>,
    /// Bytes of the audit entries kept (capped by MAX_AUDIT_BYTES).
    pub audit_bytes: usize,
    pub audit_dropped: u64,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u64,
    pub checkpoint: Option<String>,
    /// Objects written, in order of completion.
    pub objects: Vec<ObjectRecord>,
}

impl ActionContext {
    /// A context that grants nothing, for calls that need no capability (describe) and for
    /// benchmarks.
    pub fn detached(plugin_name: &str) -> ActionContext {
        ActionContext {
            action: "describe".into(),
            blueprint: String::new(),
            plugin_name: plugin_name.into(),
            workload: String::new(),
            declared: Capabilities::default(),
            granted: Capabilities::default(),
            exec: Arc::new(exec::LocalExec::new(
                String::new(),
                BTreeMap::new(),
                BTreeMap::new(),
            )),
            kube: Arc::new(kube::NoCluster),
            snapshots: Arc::new(snapshot::NoSnapshots),
            locations: BTreeMap::new(),
            secrets: secrets::SecretValues::default(),
            redactor: Redactor::new(),
            limits: EffectiveLimits::resolve(&Default::default(), "describe")
                .expect("default limits are valid"),
            started: Instant::now(),
            cancelled: AtomicBool::new(false),
            progress: Progress::default(),
            records: Mutex::new(Records::default()),
            on_audit: Default::default(),
            exec_checks: Default::default(),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Record one capability call on the audit trail (no secret values: callers pass
    /// summaries, and the result text is redacted here).
    pub fn audit<T>(
        &self,
        capability: &str,
        target: &str,
        args: &str,
        started: Instant,
        result: &Result<T, WitError>,
        bytes: u64,
    ) {
        // Every field may carry what the plugin passed: clipped, then redacted.
        let keep = |s: &str, max: usize| self.redactor.redact(clip(s, max));
        let result = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => keep(&error_text(e), MAX_AUDIT_RESULT),
        };
        let entry = AuditEntry {
            at_ms: started.duration_since(self.started).as_millis() as u64,
            capability: capability.to_string(),
            target: keep(target, MAX_AUDIT_TARGET),
            args: keep(args, MAX_AUDIT_ARGS),
            result,
            duration_ms: started.elapsed().as_millis() as u64,
            bytes,
        };
        tracing::debug!(capability, target, result = %entry.result, duration_ms = entry.duration_ms, "capability call");
        if let Some(hook) = self.on_audit.get() {
            hook(&entry);
        }
        let size = entry.target.len() + entry.args.len() + entry.result.len() + 64;
        let mut r = self.records.lock().unwrap();
        if r.audit.len() < MAX_AUDIT && r.audit_bytes + size <= MAX_AUDIT_BYTES {
            r.audit_bytes += size;
            r.audit.push(entry);
        } else {
            r.audit_dropped += 1;
        }
    }

    /// True (and counted as dropped) once the plugin has logged as much as is recorded.
    pub fn logs_full(&self) -> bool {
        let mut r = self.records.lock().unwrap();
        if r.logs.len() >= self.limits.log_lines {
            if r.logs_dropped == 0 {
                tracing::warn!(
                    plugin = %self.plugin_name,
                    "the plugin logged {} lines (spec.limits.logLines); further lines are dropped",
                    self.limits.log_lines
                );
            }
            r.logs_dropped += 1;
            return true;
        }
        false
    }

    pub fn record_log(&self, line: LogLine) {
        let mut r = self.records.lock().unwrap();
        if r.logs.len() < self.limits.log_lines {
            r.logs.push(line);
        } else {
            r.logs_dropped += 1;
        }
    }

    fn denied(&self, what: &str, declared: bool, grant_field: &str) -> WitError {
        if !declared {
            WitError::Denied(format!(
                "{what}: not declared in plugin {}'s manifest (capabilities)",
                self.plugin_name
            ))
        } else {
            WitError::Denied(format!(
                "{what}: not granted by Blueprint {} (add it to spec.grants.{grant_field})",
                self.blueprint
            ))
        }
    }

    /// exec: argv must match a declared pattern and a granted pattern, each of which also
    /// allows every environment variable the process is given (`env`: name and value, or
    /// `None` for a secret's).
    pub fn check_exec(
        &self,
        argv: &[String],
        env: &[(&str, Option<&str>)],
    ) -> Result<(), WitError> {
        let program = argv.first().map(String::as_str).unwrap_or("");
        if argv.is_empty() || program.is_empty() {
            return Err(WitError::InvalidArgument("exec: argv is empty".into()));
        }
        let mut what = format!(
            "exec of `{program}` with {} argument(s)",
            argv.len().saturating_sub(1)
        );
        if !env.is_empty() {
            let names: Vec<&str> = env.iter().map(|(n, _)| *n).collect();
            what.push_str(&format!(" and environment {}", names.join(", ")));
        }
        let declared = self.declared.exec_pattern_for(argv, env).is_some();
        if !declared || self.granted.exec_pattern_for(argv, env).is_none() {
            return Err(self.denied(&what, declared, "exec"));
        }
        Ok(())
    }

    pub fn check_image(&self, image: &str) -> Result<(), WitError> {
        let allowed = |c: &Capabilities| {
            c.images
                .iter()
                .any(|p| coffer_manifest::glob_matches(p, image))
        };
        let declared = allowed(&self.declared);
        if !declared || !allowed(&self.granted) {
            return Err(self.denied(
                &format!("a task pod with image {image}"),
                declared,
                "images",
            ));
        }
        Ok(())
    }

    pub fn check_location(
        &self,
        name: &str,
        access: LocationAccess,
    ) -> Result<Arc<location::LocationBinding>, WitError> {
        let what = format!("location {} access to {name:?}", access.as_str());
        let declared = self.declared.allows_location(access);
        if !declared || !self.granted.allows_location(access) {
            return Err(self.denied(&what, declared, "location"));
        }
        let binding = self.locations.get(name).ok_or_else(|| {
            WitError::NotFound(format!(
                "location {name:?} is not bound to this action (bound: {})",
                self.locations
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok(binding.clone())
    }

    pub fn check_secret(&self, name: &str) -> Result<(), WitError> {
        let declared = self.declared.allows_secret(name);
        if !declared || !self.granted.allows_secret(name) {
            return Err(self.denied(&format!("secret {name:?}"), declared, "secrets"));
        }
        Ok(())
    }

    pub fn check_snapshot(&self) -> Result<(), WitError> {
        let declared = self.declared.snapshot;
        if !declared || !self.granted.snapshot {
            return Err(self.denied("volume snapshots", declared, "snapshot"));
        }
        Ok(())
    }

    /// `api_version` is the object's (`apps/v1`, `v1`); a grant names its group (`apps`,
    /// `""` for core, `*` for any), kind and verbs, and the namespaces it reaches besides the
    /// subject's own (`namespace` is where the call goes).
    pub fn check_kube(
        &self,
        api_version: &str,
        kind: &str,
        verb: &str,
        namespace: &str,
    ) -> Result<(), WitError> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let home = self.kube.home_namespace();
        let kind_ok = |g: &coffer_manifest::KindGrant| {
            (g.api_group == group || g.api_group == "*")
                && (g.kind == kind || g.kind == "*")
                && g.verbs.iter().any(|v| v == verb || v == "*")
        };
        let ns_ok = |g: &coffer_manifest::KindGrant| {
            // Local mode has no cluster: the backend answers `unavailable`.
            home == Some(namespace)
                || (home.is_none() && namespace.is_empty())
                || g.namespaces
                    .iter()
                    .any(|p| coffer_manifest::glob_matches(p, namespace))
        };
        let has = |c: &Capabilities| c.kube.iter().any(|g| kind_ok(g) && ns_ok(g));
        let declared = has(&self.declared);
        if !declared || !has(&self.granted) {
            let what = if group.is_empty() {
                format!("kube {verb} on {kind}")
            } else {
                format!("kube {verb} on {kind}.{group}")
            };
            let kind_granted = |c: &Capabilities| c.kube.iter().any(kind_ok);
            let what = if kind_granted(&self.declared) && kind_granted(&self.granted) {
                format!(
                    "{what} in namespace {namespace} (the subject's is {}; list others in the grant's namespaces)",
                    home.unwrap_or("none")
                )
            } else {
                what
            };
            return Err(self.denied(&what, declared, "kube"));
        }
        Ok(())
    }

    pub fn check_signed_http(&self, profile: &str) -> Result<(), WitError> {
        let has = |c: &Capabilities| c.signed_http.iter().any(|p| p == profile);
        let declared = has(&self.declared);
        if !declared || !has(&self.granted) {
            return Err(self.denied(
                &format!("signed-http profile {profile:?}"),
                declared,
                "signedHttp",
            ));
        }
        Ok(())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// One line for an error of the WIT `error` type.
pub fn error_text(e: &WitError) -> String {
    match e {
        WitError::Denied(s) => format!("denied: {s}"),
        WitError::NotFound(s) => format!("not found: {s}"),
        WitError::InvalidArgument(s) => format!("invalid argument: {s}"),
        WitError::Conflict(s) => format!("conflict: {s}"),
        WitError::Timeout(s) => format!("timeout: {s}"),
        WitError::Cancelled => "cancelled".to_string(),
        WitError::Unavailable(s) => format!("unavailable: {s}"),
        WitError::Limit(s) => format!("limit: {s}"),
        WitError::Remote(RemoteError {
            system,
            code,
            message,
            ..
        }) => match code {
            Some(c) if !message.contains(c.as_str()) => format!("{system} ({c}): {message}"),
            _ => format!("{system}: {message}"),
        },
        WitError::Io(s) => format!("io: {s}"),
        WitError::Internal(s) => format!("internal: {s}"),
    }
}

/// `wasmtime::Result<Result<T, WitError>>`: a host function's result that does not trap.
pub type HostResult<T> = wasmtime::Result<Result<T, WitError>>;
