//! coffer's kinds on a cluster, typed: the roots kube's `CustomResource` derive generates
//! from the model's specs (`ActionSetResource`, …), and the conversions between them and the
//! model objects the engine works on. The CRDs themselves come from `crd.rs`.

use crate::model::{
    ActionSet, ActionSetStatus, Blueprint, BlueprintBinding, Kind, Meta, Object, Policy, Profile,
    RestorePoint, Signer,
};
pub use crate::model::{
    ActionSetResource, BlueprintBindingResource, BlueprintResource, PolicyResource,
    ProfileResource, RestorePointResource, SignerResource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;

fn meta(m: &ObjectMeta) -> Meta {
    Meta {
        name: m.name.clone().unwrap_or_default(),
        labels: m.labels.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
        creation_timestamp: m.creation_timestamp.as_ref().map(|t| t.0.to_string()),
    }
}

fn object<S: Clone, T: Default>(kind: Kind, m: &ObjectMeta, spec: &S, status: T) -> Object<S, T> {
    let mut o = Object::new(kind, m.name.clone().unwrap_or_default(), spec.clone());
    o.metadata = meta(m);
    o.status = status;
    o
}

pub fn action_set(r: &ActionSetResource) -> ActionSet {
    object(
        Kind::ActionSet,
        &r.metadata,
        &r.spec,
        r.status.clone().unwrap_or_default(),
    )
}

pub fn blueprint(r: &BlueprintResource) -> Blueprint {
    object(Kind::Blueprint, &r.metadata, &r.spec, Default::default())
}

pub fn profile(r: &ProfileResource) -> Profile {
    object(Kind::Profile, &r.metadata, &r.spec, Default::default())
}

pub fn signer(r: &SignerResource) -> Signer {
    object(Kind::Signer, &r.metadata, &r.spec, Default::default())
}

pub fn policy(r: &PolicyResource) -> Policy {
    object(
        Kind::Policy,
        &r.metadata,
        &r.spec,
        r.status.clone().unwrap_or_default(),
    )
}

pub fn restore_point(r: &RestorePointResource) -> RestorePoint {
    object(Kind::RestorePoint, &r.metadata, &r.spec, Default::default())
}

pub fn binding(r: &BlueprintBindingResource) -> BlueprintBinding {
    object(
        Kind::BlueprintBinding,
        &r.metadata,
        &r.spec,
        Default::default(),
    )
}

/// A restore point as a resource to create (its namespace is the Api's).
pub fn restore_point_resource(rp: &RestorePoint) -> RestorePointResource {
    let mut r = RestorePointResource::new(rp.name(), rp.spec.clone());
    if !rp.metadata.labels.is_empty() {
        r.metadata.labels = Some(rp.metadata.labels.clone());
    }
    if !rp.metadata.annotations.is_empty() {
        r.metadata.annotations = Some(rp.metadata.annotations.clone());
    }
    r
}

/// The status fields the daemon writes outside a run (claims, settling, refusals); `None`
/// fields are left as they are, `Some(None)` clears one.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::model::Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_pending: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guards: Option<Vec<crate::model::GuardRecord>>,
}

impl StatusPatch {
    /// Failed now, for `why`, with no runner.
    pub fn failed(why: impl Into<String>) -> StatusPatch {
        StatusPatch {
            phase: Some(crate::model::Phase::Failed),
            end_time: Some(crate::model::now_rfc3339()),
            error: Some(why.into()),
            runner: Some(None),
            ..Default::default()
        }
    }
}

/// Merge `patch` into an ActionSet's status; `version`: only if the object is still at
/// that resourceVersion (a 409 otherwise).
pub async fn patch_status(
    api: &Api<ActionSetResource>,
    name: &str,
    patch: &StatusPatch,
    version: Option<&str>,
) -> Result<ActionSetResource, kube::Error> {
    let mut body = serde_json::json!({ "status": patch });
    if let Some(v) = version {
        body["metadata"] = serde_json::json!({ "resourceVersion": v });
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
}

/// The status of an ActionSet resource (the default when it has none yet).
pub fn status(r: &ActionSetResource) -> ActionSetStatus {
    r.status.clone().unwrap_or_default()
}

/// `namespace/name`.
pub fn key<K: kube::Resource>(r: &K) -> String {
    format!(
        "{}/{}",
        r.meta().namespace.as_deref().unwrap_or(""),
        r.meta().name.as_deref().unwrap_or("")
    )
}
