use super::restorepoint::ArtifactRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Run action X of a Blueprint on a Workload with a Profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSetSpec {
    /// `backup`, `restore`, `delete`, a hook, or an action the plugin defines.
    pub action: String,
    /// Local mode: a Workload's name. On Kubernetes: `kind/name` in the ActionSet's
    /// namespace, e.g. `statefulset/pg`.
    pub workload: String,
    /// On Kubernetes, empty means: the Blueprint bound to the workload (a BlueprintBinding,
    /// else its `coffer.dev/blueprint` annotation).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blueprint: String,
    /// On Kubernetes, empty means the Profile named `default`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
    /// The restore point a restore or delete works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    /// Set to stop a running action: it is interrupted, a backup's partial objects are
    /// removed, and it ends Failed ("cancelled").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
    /// Fail the action when it runs longer than this (e.g. `30m`); default: the
    /// Blueprint's timeout for the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

impl ActionSetSpec {
    pub fn kind(&self) -> super::ActionKind {
        super::ActionKind::parse(&self.action)
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
        }
    }
}

/// The durable record of an action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSetStatus {
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// The process running it, so a later coffer can tell a dead run from a live one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// On Kubernetes: the daemon instance running it (its Lease identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// On Kubernetes: the runner's clock when it last showed it is alive (every 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// On Kubernetes: the Blueprint and Profile the action resolved to (the spec may leave
    /// them to bindings and defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Where in the location this action writes (backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// The restore point this backup produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A failed backup whose partial objects or open uploads could not be removed yet
    /// (e.g. the server was down): the next coffer process tries again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleanup_pending: bool,
    /// How many later commands tried that cleanup (it is given up after a few).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub cleanup_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<AuditEntry>,
    /// Audit entries beyond the recorded cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audit_dropped: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Plugin log lines beyond the recorded cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Who runs an ActionSet. A pid means something only in its PID namespace on the machine it
/// booted: a coffer elsewhere (another container on the same state dir) judges liveness by
/// the runner's heartbeat instead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Owner {
    pub pid: u32,
    /// The process start time (jiffies since boot), to tell a reused pid apart.
    pub start_ticks: u64,
    /// The kernel's boot id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
    /// The PID namespace (`pid:[4026531836]`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid_namespace: String,
    /// Random per run: status writes compare-and-set on it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// One capability call, as recorded on the ActionSet (no secret values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEntry {
    /// Milliseconds since the action started.
    pub at_ms: u64,
    pub capability: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub args: String,
    /// `ok`, or the error.
    pub result: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogLine {
    pub at_ms: u64,
    pub level: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
