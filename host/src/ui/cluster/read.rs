//! What a viewer sees of the cluster: every StatefulSet and Deployment with how it is
//! protected, ActionSets, RestorePoints and Policies — read with the daemon's
//! ServiceAccount, then shown only where the viewer's own RBAC lets them list coffer's
//! resources (`list actionsets` in a namespace for its applications and actions, `list
//! restorepoints` for its restore points, `list policies` in coffer's namespace).

use super::ClusterUi;
use super::access::Viewer;
use crate::binding::Resolution;
use crate::k8s::kinds::{
    self, ActionSetResource, BlueprintResource, PolicyResource, ProfileResource,
    RestorePointResource,
};
use crate::k8s::policies::select::{self, Found};
use crate::model::{Compliance, Policy};
use anyhow::{Context, Result};
use kube::api::{Api, ListParams};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One workload on the cluster as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// `namespace/kind/name`, as compliance names it.
    pub name: String,
    pub namespace: String,
    pub kind: String,
    /// How ActionSets name it: `statefulset/pg`.
    pub workload: String,
    /// Empty when nothing protects it.
    pub blueprint: String,
    /// `annotation`, `binding` or `none`.
    pub bound_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// `Compliant`, `NonCompliant`, `Unmanaged`, or `Unprotected` (no Blueprint).
    pub compliance: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    pub policies: Vec<String>,
    pub restore_points: usize,
}

impl Application {
    /// Its page: `/applications/db/statefulset/pg`.
    pub fn path(&self) -> String {
        format!(
            "/applications/{}/{}",
            crate::ui::pages::url(&self.namespace),
            self.workload
                .split('/')
                .map(crate::ui::pages::url)
                .collect::<Vec<_>>()
                .join("/")
        )
    }

    /// How it got its Blueprint, in words.
    pub fn via(&self) -> String {
        match (self.bound_by.as_str(), &self.binding) {
            ("binding", Some(b)) => format!("BlueprintBinding {b}"),
            ("annotation", _) => "annotation coffer.dev/blueprint".into(),
            _ => "-".into(),
        }
    }
}

/// The namespaces among `all` in which `v` may list `resource`.
pub async fn visible(
    ui: &ClusterUi,
    v: &Viewer,
    resource: &str,
    all: impl IntoIterator<Item = String>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for ns in all.into_iter().collect::<BTreeSet<_>>() {
        if ui.access.may_list(v, resource, &ns).await? {
            out.insert(ns);
        }
    }
    Ok(out)
}

/// The Policies, when `v` may list them (None: not theirs to see).
pub async fn policies(ui: &ClusterUi, v: &Viewer) -> Result<Option<Vec<Policy>>> {
    if !ui.access.may_list(v, "policies", &ui.config_ns).await? {
        return Ok(None);
    }
    Ok(Some(all_policies(ui).await?))
}

async fn all_policies(ui: &ClusterUi) -> Result<Vec<Policy>> {
    Ok(
        Api::<PolicyResource>::namespaced(ui.client.clone(), &ui.config_ns)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing Policies in namespace {}", ui.config_ns))?
            .items
            .iter()
            .map(kinds::policy)
            .collect(),
    )
}

/// The Profiles, when `v` may list them.
pub async fn profiles(ui: &ClusterUi, v: &Viewer) -> Result<Option<Vec<ProfileResource>>> {
    config_list(ui, v, "profiles").await
}

/// The Blueprints, when `v` may list them.
pub async fn blueprints(ui: &ClusterUi, v: &Viewer) -> Result<Option<Vec<BlueprintResource>>> {
    config_list(ui, v, "blueprints").await
}

/// A kind of coffer's namespace, when `v` may list `resource` there.
async fn config_list<K>(ui: &ClusterUi, v: &Viewer, resource: &str) -> Result<Option<Vec<K>>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    if !ui.access.may_list(v, resource, &ui.config_ns).await? {
        return Ok(None);
    }
    let mut items = Api::<K>::namespaced(ui.client.clone(), &ui.config_ns)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing {resource} in namespace {}", ui.config_ns))?
        .items;
    items.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    Ok(Some(items))
}

/// Every RestorePoint `v` may list, newest first.
pub async fn restore_points(ui: &ClusterUi, v: &Viewer) -> Result<Vec<RestorePointResource>> {
    let mut all = Api::<RestorePointResource>::all(ui.client.clone())
        .list(&ListParams::default())
        .await
        .context("listing RestorePoints")?
        .items;
    let seen = visible(ui, v, "restorepoints", all.iter().map(namespace)).await?;
    all.retain(|r| seen.contains(&namespace(r)));
    all.sort_by(|a, b| b.spec.start_time.cmp(&a.spec.start_time));
    Ok(all)
}

/// Every ActionSet `v` may list, newest first.
pub async fn action_sets(ui: &ClusterUi, v: &Viewer) -> Result<Vec<ActionSetResource>> {
    let mut all = Api::<ActionSetResource>::all(ui.client.clone())
        .list(&ListParams::default())
        .await
        .context("listing ActionSets")?
        .items;
    let seen = visible(ui, v, "actionsets", all.iter().map(namespace)).await?;
    all.retain(|r| seen.contains(&namespace(r)));
    all.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    Ok(all)
}

pub fn namespace<K: kube::Resource>(r: &K) -> String {
    r.meta().namespace.clone().unwrap_or_default()
}

/// Every StatefulSet and Deployment in the namespaces where `v` may list ActionSets, with
/// its Blueprint, how it was bound, its compliance as the daemon last judged it, and how
/// many RestorePoints it has. Anything failing first.
pub async fn applications(ui: &ClusterUi, v: &Viewer) -> Result<Vec<Application>> {
    let found = select::workloads(&ui.client, &ui.config_ns).await?;
    let seen = visible(
        ui,
        v,
        "actionsets",
        found.iter().map(|w| w.info.namespace.clone()),
    )
    .await?;
    let policies = all_policies(ui).await?;
    let mut judged: HashMap<String, Vec<Compliance>> = HashMap::new();
    for c in policies
        .iter()
        .flat_map(|p| p.status.compliance.iter().cloned())
    {
        judged.entry(c.workload.clone()).or_default().push(c);
    }
    let rps = Api::<RestorePointResource>::all(ui.client.clone())
        .list(&ListParams::default())
        .await
        .context("listing RestorePoints")?
        .items;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rps {
        *counts
            .entry(format!("{}/{}", namespace(r), r.spec.workload))
            .or_default() += 1;
    }
    let mut out: Vec<Application> = found
        .iter()
        .filter(|w| seen.contains(&w.info.namespace))
        .map(|w| application(w, judged.remove(&w.id()), &counts))
        .collect();
    out.sort_by_key(|a| (a.compliance != "NonCompliant", a.name.clone()));
    Ok(out)
}

fn application(
    w: &Found,
    judged: Option<Vec<Compliance>>,
    counts: &BTreeMap<String, usize>,
) -> Application {
    let judged = judged.unwrap_or_default();
    let reasons: Vec<String> = judged
        .iter()
        .filter(|c| c.state == "NonCompliant")
        .map(|c| {
            format!(
                "{}: {}{}",
                c.policy.as_deref().unwrap_or("-"),
                c.reason.as_deref().unwrap_or("NonCompliant"),
                c.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let policies: Vec<String> = judged.iter().filter_map(|c| c.policy.clone()).collect();
    let compliance = if w.resolution == Resolution::Unprotected && policies.is_empty() {
        "Unprotected"
    } else if !reasons.is_empty() {
        "NonCompliant"
    } else if !policies.is_empty() {
        "Compliant"
    } else {
        // Protected, and no Policy selects it.
        "Unmanaged"
    };
    let (bound_by, binding) = match &w.resolution {
        Resolution::Binding { binding, .. } => ("binding", Some(binding.clone())),
        Resolution::Annotation { .. } => ("annotation", None),
        Resolution::Unprotected => ("none", None),
    };
    Application {
        name: w.id(),
        namespace: w.info.namespace.clone(),
        kind: w.info.kind.clone(),
        workload: w.subject(),
        blueprint: w.resolution.blueprint().unwrap_or_default().to_string(),
        bound_by: bound_by.into(),
        binding,
        compliance: compliance.into(),
        reasons,
        policies,
        restore_points: counts.get(&w.id()).copied().unwrap_or(0),
    }
}
