//! Which workloads a Policy selects on a cluster (its selector matched as a
//! BlueprintBinding's is, over every StatefulSet and Deployment), and whether each is
//! protected as its Policies say. The daemon writes this into each Policy's status and
//! metrics; `coffer get compliance --kubeconfig` computes it the same way.

use super::seal;
use crate::binding::{Resolution, WorkloadInfo, matches, resolve};
use crate::k8s::kinds::{self, BlueprintBindingResource, ProfileResource, RestorePointResource};
use crate::k8s::{PROFILE_ANNOTATION, profile_check};
use crate::model::{Compliance, Policy, WorkloadSelector};
use crate::policy::POLICY_LABEL;
use crate::scheduler::compliance::judge;
use crate::scheduler::tick::restore_point_time;
use crate::storage::manifest::ManifestKey;
use anyhow::{Context, Result};
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use std::collections::BTreeMap;

/// A workload on the cluster and the Blueprint protecting it.
#[derive(Debug, Clone)]
pub struct Found {
    pub info: WorkloadInfo,
    pub resolution: Resolution,
}

impl Found {
    /// How ActionSets name it: `statefulset/pg`.
    pub fn subject(&self) -> String {
        format!("{}/{}", self.info.kind.to_ascii_lowercase(), self.info.name)
    }

    /// How compliance names it: `db/statefulset/pg`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.info.namespace, self.subject())
    }
}

/// The selector of `p` on a cluster; an error names what is wrong with it.
pub fn selector(p: &Policy) -> Result<WorkloadSelector, String> {
    let s = &p.spec.selector;
    if !s.workloads.is_empty() {
        return Err("spec.selector.workloads names local Workloads; on Kubernetes select by kinds, namespaces, labels or annotations".into());
    }
    let sel = WorkloadSelector {
        kinds: s.kinds.clone(),
        namespaces: s.namespaces.clone(),
        labels: s.labels.clone(),
        annotations: s.annotations.clone(),
    };
    if sel.kinds.is_empty()
        && sel.namespaces.is_empty()
        && sel.labels.is_empty()
        && sel.annotations.is_empty()
    {
        return Err("spec.selector is empty, so the Policy would select nothing; give kinds, namespaces, labels or annotations".into());
    }
    if p.name().len() > 63 {
        return Err("the Policy's name is longer than 63 characters, so it cannot be a label value on what it makes; choose a shorter one".into());
    }
    Ok(sel)
}

/// Every StatefulSet and Deployment with the Blueprint protecting it.
pub async fn workloads(client: &Client, config_ns: &str) -> Result<Vec<Found>> {
    workloads_in(client, config_ns, None).await
}

/// [`workloads`] of namespace `ns` only (`None`: every namespace).
pub async fn workloads_in(
    client: &Client,
    config_ns: &str,
    ns: Option<&str>,
) -> Result<Vec<Found>> {
    let bindings: Vec<_> = Api::<BlueprintBindingResource>::namespaced(client.clone(), config_ns)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing BlueprintBindings in namespace {config_ns}"))?
        .items
        .iter()
        .map(kinds::binding)
        .collect();
    let mut out = Vec::new();
    for kind in ["StatefulSet", "Deployment"] {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", kind));
        let api = match ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
            None => Api::<DynamicObject>::all_with(client.clone(), &ar),
        };
        for w in api
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing {kind}s"))?
            .items
        {
            let info = WorkloadInfo {
                kind: kind.into(),
                namespace: w.metadata.namespace.clone().unwrap_or_default(),
                name: w.metadata.name.clone().unwrap_or_default(),
                labels: w.metadata.labels.clone().unwrap_or_default(),
                annotations: w.metadata.annotations.clone().unwrap_or_default(),
            };
            let resolution = resolve(&info, &bindings);
            out.push(Found { info, resolution });
        }
    }
    Ok(out)
}

/// The protected workloads `p` selects (an unprotected one it matches is not backed up:
/// compliance reports it `NoBlueprint`).
pub fn selected<'a>(p: &Policy, all: &'a [Found]) -> Result<Vec<&'a Found>, String> {
    let sel = selector(p)?;
    Ok(all
        .iter()
        .filter(|w| matches(&sel, &w.info) && w.resolution != Resolution::Unprotected)
        .collect())
}

/// Compliance of every workload under every Policy (and `Unmanaged` for protected ones
/// no Policy selects), judged at `now`.
pub async fn compliance(
    client: &Client,
    config_ns: &str,
    key: &ManifestKey,
    policies: &[Policy],
    now: Timestamp,
) -> Result<Vec<Compliance>> {
    let all = workloads(client, config_ns).await?;
    let rps = Api::<RestorePointResource>::all(client.clone())
        .list(&ListParams::default().labels(POLICY_LABEL))
        .await
        .context("listing the Policies' RestorePoints")?
        .items;
    let profiles: BTreeMap<String, ProfileResource> =
        Api::<ProfileResource>::namespaced(client.clone(), config_ns)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing Profiles in namespace {config_ns}"))?
            .items
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
            .collect();
    // The newest sealed restore point per (policy, namespace, workload).
    let mut newest: BTreeMap<(String, String, String), (Timestamp, String)> = BTreeMap::new();
    for rp in &rps {
        let ns = rp.metadata.namespace.clone().unwrap_or_default();
        let Some(policy) = rp
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POLICY_LABEL))
        else {
            continue;
        };
        if !seal::restore_point_is(key, rp, &ns, policy) {
            continue;
        }
        let Some(t) = restore_point_time(&kinds::restore_point(rp)) else {
            continue;
        };
        let k = (policy.clone(), ns, rp.spec.workload.clone());
        let name = rp.metadata.name.clone().unwrap_or_default();
        if newest.get(&k).is_none_or(|(old, _)| t > *old) {
            newest.insert(k, (t, name));
        }
    }
    let mut rows = Vec::new();
    let chosen = selectors(policies);
    for w in &all {
        for (p, sel) in &chosen {
            if !matches(sel, &w.info) {
                continue;
            }
            if w.resolution == Resolution::Unprotected {
                rows.push(Compliance {
                    workload: w.id(),
                    policy: Some(p.name().to_string()),
                    state: "NonCompliant".into(),
                    reason: Some("NoBlueprint".into()),
                    message: Some(format!("no Blueprint protects it: annotate it with coffer.dev/blueprint=<name>, or create a BlueprintBinding in namespace {config_ns} that matches it")),
                    newest_restore_point: None,
                    next_run: None,
                });
                continue;
            }
            let profile = p
                .spec
                .profile
                .clone()
                .or_else(|| w.info.annotations.get(PROFILE_ANNOTATION).cloned())
                .unwrap_or_else(|| "default".into());
            let usable = match profiles.get(&profile) {
                None => Err(format!(
                    "Profile {profile} not found in namespace {config_ns}"
                )),
                Some(pr) => profile_check::refuse_if_failed(pr).map_err(|e| format!("{e:#}")),
            };
            let k = (p.name().to_string(), w.info.namespace.clone(), w.subject());
            rows.push(judge(&w.id(), p, newest.get(&k).cloned(), usable, now));
        }
    }
    rows.extend(unmanaged(&all, policies));
    Ok(rows)
}

/// The Policies that can select (an invalid one selects nothing), with their selectors.
fn selectors(policies: &[Policy]) -> Vec<(&Policy, WorkloadSelector)> {
    policies
        .iter()
        .filter_map(|p| selector(p).ok().map(|s| (p, s)))
        .collect()
}

/// The protected workloads of `all` that no Policy selects.
pub fn unmanaged(all: &[Found], policies: &[Policy]) -> Vec<Compliance> {
    let chosen = selectors(policies);
    all.iter()
        .filter(|w| w.resolution != Resolution::Unprotected)
        .filter(|w| !chosen.iter().any(|(_, s)| matches(s, &w.info)))
        .map(|w| Compliance::unmanaged(w.id()))
        .collect()
}
