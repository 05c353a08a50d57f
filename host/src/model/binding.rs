use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which Blueprint protects which Kubernetes workloads, by what they are rather than by an
/// annotation on each (K10's BlueprintBinding). A binding overrides the
/// `coffer.dev/blueprint` annotation; among bindings that match, the earliest created wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintBindingSpec {
    pub blueprint: String,
    #[serde(rename = "match")]
    pub selector: WorkloadSelector,
}

/// Every field that is given must match (an empty selector matches nothing, on purpose).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Workload kinds: Deployment, StatefulSet, DeploymentConfig, ... (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Namespaces; `*` globs allowed (`team-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Labels that must all be present with these values; a value of `*` only requires
    /// the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, the same way.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
