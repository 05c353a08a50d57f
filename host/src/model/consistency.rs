//! What an application-consistent backup leaves on its record: the guards that undo a
//! quiesce (and whether they ran), and the quiesce window itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A command registered with `runtime.add-guard`: run on any end of the action unless the
/// plugin fired or disarmed it. Persisted before the plugin takes the step it undoes, so a
/// later coffer (or daemon leader) can run it for a runner that died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardRecord {
    /// What it undoes, as the plugin named it (`thaw /data`).
    pub name: String,
    /// argv as it runs (after the argument policy).
    pub command: Vec<String>,
    /// The environment the plugin gave it (no secrets: a guard cannot take any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Where it runs: the workload (and on Kubernetes the pod and container).
    pub workload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub state: GuardState,
    /// Milliseconds after the action started.
    pub registered_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Who ran it: `plugin`, `end` (the action ended with it armed), `limit` (the quiesce
    /// window ran out), `recovery` (a later coffer, for a runner that died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_by: Option<String>,
    /// How it ended: `exit 0`, or what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// On Kubernetes: a MAC by the cluster's key over what the guard runs and where. The
    /// ActionSet is the tenant's to write; a new leader runs only guards a coffer sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// The domain of a guard's seal.
pub const GUARD_SEAL: &str = "guard v1";

impl GuardRecord {
    /// What a seal covers: the ActionSet it belongs to (namespace, name) and what the guard
    /// runs where — never its state, which changes as it runs.
    pub fn seal_fields(&self, namespace: &str, action_set: &str) -> Vec<String> {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            namespace.to_string(),
            action_set.to_string(),
            self.name.clone(),
            self.workload.clone(),
            self.container.clone().unwrap_or_default(),
            self.command.join("\0"),
            env.join("\0"),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum GuardState {
    /// Registered; runs when the action ends.
    Armed,
    /// Ran and exited 0.
    Fired,
    /// Ran and failed (or could not be started): what it guards may still be in effect.
    Failed,
    /// The plugin undid its state another way; never run.
    Disarmed,
}

impl GuardState {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Armed => "Armed",
            GuardState::Fired => "Fired",
            GuardState::Failed => "Failed",
            GuardState::Disarmed => "Disarmed",
        }
    }
}

/// How long the application was quiesced (`runtime.quiesce-begin` to `quiesce-end`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuiesceWindow {
    /// RFC 3339, with milliseconds.
    pub begin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Its length; none while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
}
