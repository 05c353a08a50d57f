//! The resource model: the kinds users write (Blueprint, Profile, Workload) and the kinds
//! coffer records (ActionSet, RestorePoint). All are `coffer.dev/v1alpha1`, the same YAML in
//! local mode (kept in the catalog) and, later, on Kubernetes (CRDs).

mod action_kind;
mod actionset;
mod binding;
mod blueprint;
mod consistency;
pub mod names;
mod parse;
mod policy;
mod profile;
pub(crate) mod restorepoint;
mod signer;
mod workload;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use action_kind::ActionKind;
pub use actionset::{
    ActionSetResource, ActionSetSpec, ActionSetStatus, AuditEntry, LogLine, Owner, Phase,
};
pub use binding::{BlueprintBindingResource, BlueprintBindingSpec, WorkloadSelector};
pub use blueprint::{BlueprintResource, BlueprintSpec, Limits, PluginRef};
pub use consistency::{GUARD_SEAL, GuardRecord, GuardRequest, GuardState, QuiesceWindow};
pub use parse::{ParseError, parse_documents};
pub use policy::{
    Compliance, POLICY_RUNS_KEPT, PolicyResource, PolicyRun, PolicySelector, PolicySpec,
    PolicyStatus, Retention, StreamSpec, StreamStatus,
};
pub use profile::{
    AgeSpec, Credentials, EncryptionSpec, ObjectLockMode, ObjectLockSpec, ProbeResult,
    ProfileResource, ProfileSpec, ProfileStatus, ProfileType, ProfileValidation,
};
pub use restorepoint::{
    ApplicationRecord, ArtifactRecord, ObjectRecord, PluginInfo, RestorePointResource,
    RestorePointSpec,
};
pub use signer::{SignerCredentials, SignerResource, SignerSpec, SignerType};
pub use workload::{SecretKeyRef, SecretRef, WorkloadSpec};

pub const API_VERSION: &str = "coffer.dev/v1alpha1";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

/// One resource: apiVersion, kind, metadata, spec and (for recorded kinds) status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(
        serialize = "S: Serialize, T: Serialize + Default + PartialEq",
        deserialize = "S: Deserialize<'de>, T: Deserialize<'de> + Default"
    )
)]
pub struct Object<S, T = Empty> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: S,
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: T,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

pub type Blueprint = Object<BlueprintSpec>;
pub type Profile = Object<ProfileSpec>;
pub type Workload = Object<WorkloadSpec>;
pub type ActionSet = Object<ActionSetSpec, ActionSetStatus>;
pub type RestorePoint = Object<RestorePointSpec>;
pub type BlueprintBinding = Object<BlueprintBindingSpec>;
pub type Policy = Object<PolicySpec, PolicyStatus>;
pub type Signer = Object<SignerSpec>;

impl<S, T: Default> Object<S, T> {
    pub fn new(kind: Kind, name: impl Into<String>, spec: S) -> Self {
        Object {
            api_version: API_VERSION.into(),
            kind: kind.as_str().into(),
            metadata: Meta {
                name: name.into(),
                ..Meta::default()
            },
            spec,
            status: T::default(),
        }
    }
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

/// The kinds, with the names the CLI accepts for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Blueprint,
    Profile,
    Workload,
    ActionSet,
    RestorePoint,
    BlueprintBinding,
    Policy,
    Signer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blueprint => "Blueprint",
            Kind::Profile => "Profile",
            Kind::Workload => "Workload",
            Kind::ActionSet => "ActionSet",
            Kind::RestorePoint => "RestorePoint",
            Kind::BlueprintBinding => "BlueprintBinding",
            Kind::Policy => "Policy",
            Kind::Signer => "Signer",
        }
    }

    /// Parse what a user types: `blueprint`, `blueprints`, `bp`, `Blueprint`...
    pub fn parse(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        let l = l.strip_suffix('s').unwrap_or(&l);
        Some(match l {
            "blueprint" | "bp" => Kind::Blueprint,
            "profile" => Kind::Profile,
            "workload" | "wl" => Kind::Workload,
            "actionset" | "a" => Kind::ActionSet,
            "restorepoint" | "rp" => Kind::RestorePoint,
            "blueprintbinding" | "binding" => Kind::BlueprintBinding,
            "policy" | "policie" | "pol" => Kind::Policy,
            "signer" => Kind::Signer,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed document of any kind a user may apply.
#[derive(Debug, Clone)]
pub enum Document {
    Blueprint(Box<Blueprint>),
    Profile(Box<Profile>),
    Workload(Box<Workload>),
    BlueprintBinding(Box<BlueprintBinding>),
    Policy(Box<Policy>),
    Signer(Box<Signer>),
}

impl Document {
    pub fn kind(&self) -> Kind {
        match self {
            Document::Blueprint(_) => Kind::Blueprint,
            Document::Profile(_) => Kind::Profile,
            Document::Workload(_) => Kind::Workload,
            Document::BlueprintBinding(_) => Kind::BlueprintBinding,
            Document::Policy(_) => Kind::Policy,
            Document::Signer(_) => Kind::Signer,
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Document::Blueprint(o) => o.name(),
            Document::Profile(o) => o.name(),
            Document::Workload(o) => o.name(),
            Document::BlueprintBinding(o) => o.name(),
            Document::Policy(o) => o.name(),
            Document::Signer(o) => o.name(),
        }
    }
}

/// Parse a size like `256Mi`, `1Gi`, `512k`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 256Mi"))?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown size unit {unit:?} (use Ki, Mi, Gi)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parse a duration like `45m`, `10h`, `30s`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 45m: {e}"))
}

/// Now, as RFC 3339 UTC.
/// Now, RFC 3339 with milliseconds (for windows measured in milliseconds).
pub fn now_rfc3339_ms() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_kinds() {
        assert_eq!(parse_size("256Mi").unwrap(), 256 << 20);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("10Qi").unwrap_err().contains("unit"));
        assert_eq!(Kind::parse("RestorePoints"), Some(Kind::RestorePoint));
        assert_eq!(Kind::parse("bp"), Some(Kind::Blueprint));
        assert_eq!(Kind::parse("pods"), None);
        assert_eq!(parse_duration("45m").unwrap().as_secs(), 2700);
    }
}
