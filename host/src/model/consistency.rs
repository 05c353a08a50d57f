//! What an application-consistent backup leaves on its record: the guards that undo a
//! quiesce (and whether they ran), and the quiesce window itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A command registered with `runtime.add-guard` (or a signed request, with
/// `runtime.add-request-guard`): run on any end of the action unless the plugin fired or
/// disarmed it. Persisted before the plugin takes the step it undoes, so a later coffer (or
/// daemon leader) can run it for a runner that died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardRecord {
    /// What it undoes, as the plugin named it (`thaw /data`).
    pub name: String,
    /// argv as it runs (after the argument policy); empty for a request guard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The signed request it sends instead of a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GuardRequest>,
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
        let mut fields = vec![
            namespace.to_string(),
            action_set.to_string(),
            self.name.clone(),
            self.workload.clone(),
            self.container.clone().unwrap_or_default(),
            self.command.join("\0"),
            env.join("\0"),
        ];
        if let Some(r) = &self.request {
            let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            fields.extend([
                "request".to_string(),
                r.signer.clone(),
                r.service.clone(),
                r.method.clone(),
                r.url.clone(),
                headers.join("\0"),
                r.body.clone(),
            ]);
        }
        fields
    }

    /// What it runs, for a person to do by hand: the command, or the request.
    pub fn undo_text(&self) -> String {
        match &self.request {
            Some(r) => format!(
                "{} {} {} (signed by Signer {})",
                r.method, r.url, r.body, r.signer
            ),
            None => self.command.join(" "),
        }
    }
}

/// What a request guard sends: checked against the Blueprint's grant when it was registered
/// (which gave the service it is signed for), signed with the Signer's credentials of the
/// moment it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardRequest {
    pub signer: String,
    pub service: String,
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body (text: an API call's form, JSON or XML).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
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
