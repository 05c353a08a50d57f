use coffer_manifest::Capabilities;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which plugin a Blueprint runs, what it grants it, and its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintSpec {
    pub plugin: PluginRef,
    /// What the operator lends the plugin; a call needs this AND the plugin's declaration.
    #[serde(default)]
    pub grants: Capabilities,
    /// Actions this Blueprint allows; default: every action the plugin declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    /// Default params, by action name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub limits: Limits,
    /// On Kubernetes: the ServiceAccount (in the subject's namespace) that the plugin's
    /// kube calls act as, by impersonation: they can do what its RBAC allows and nothing
    /// more. Default `coffer-plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// Where the plugin's wasm comes from. `sha256` pins it: a plugin whose digest differs is
/// refused before it is compiled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    /// A plugin built into coffer, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// A .wasm component file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Require a signature by this ed25519 public key (hex), as made by `coffer plugin sign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Where the signature is; default `<path>.sig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<std::path::PathBuf>,
}

/// Sandbox limits. Unset fields take the defaults listed in docs/security.md (Limits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Guest linear memory, e.g. `256Mi`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "size_field"
    )]
    pub memory: Option<String>,
    /// Guest CPU time per action (time spent running wasm, not waiting on the host), e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Wall-clock deadline per action name, e.g. `{backup: 45m}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timeouts: BTreeMap<String, String>,
    /// Open handles (processes, streams, transfers, stores, secrets) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handles: Option<u32>,
    /// Bytes a plugin may take by value: `exec.run` stdout, `get-bytes`, `put-bytes`, e.g. `16Mi`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "size_field"
    )]
    pub captured_output: Option<String>,
    /// Bytes the host lifts from one call's arguments, e.g. `16Mi`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "size_field"
    )]
    pub hostcall_payload: Option<String>,
    /// Bytes of each process's stderr kept (its end), e.g. `8Ki`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "size_field"
    )]
    pub stderr_tail: Option<String>,
    /// Plugin log lines recorded per action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<u32>,
}

/// A size written as a string (`256Mi`) or a plain number of bytes.
fn size_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    Ok(Option::<Size>::deserialize(d)?.map(|s| match s {
        Size::Bytes(n) => n.to_string(),
        Size::Text(t) => t,
    }))
}
