//! One cut across several claims on Kubernetes: a VolumeGroupSnapshot
//! (groupsnapshot.storage.k8s.io), where the claims share a CSI driver that has a
//! VolumeGroupSnapshotClass. The driver cuts every volume at one instant, with no quiesce.
//!
//! A group selects its claims by label, so each claim gets `coffer.dev/snapshot-group:
//! <random id>` for the cut and loses it right after. The snapshot controller makes one
//! VolumeSnapshot per claim (`spec.source.persistentVolumeClaimName`, and
//! `status.volumeGroupSnapshotName` naming the group): those are what the plugin gets, so
//! waiting, restoring and recording work as for single snapshots. Members go with their
//! group: deleting one deletes the group (the controller refuses members one by one).
//! Where there is no group class, or the API is not served or not granted, the caller cuts
//! one by one inside a quiesce window instead.

use super::csi::{CUT_POLL, CUT_TIMEOUT, CsiSnapshots};
use super::{Ref, SnapInfo};
use crate::cap::kube::client::err;
use crate::wit::WitError;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::time::Instant;

const GROUP: &str = "groupsnapshot.storage.k8s.io";
/// Newest first: the first the cluster serves is used.
const VERSIONS: &[&str] = &["v1", "v1beta2", "v1beta1"];
/// The label that puts a claim in a group for one cut.
pub const GROUP_LABEL: &str = "coffer.dev/snapshot-group";
const DEFAULT_CLASS: &str = "groupsnapshot.storage.kubernetes.io/is-default-class";

/// The API version and the VolumeGroupSnapshotClass a group of claims is cut with.
pub struct GroupClass {
    version: String,
    name: String,
}

impl CsiSnapshots {
    fn group_api(&self, version: &str, kind: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, version, kind));
        if kind.ends_with("Class") {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
        }
    }

    /// The group class for `sources`: their claims' StorageClasses share one provisioner
    /// and a VolumeGroupSnapshotClass names it as driver (the default one, or the first
    /// by name). None when any of that is missing, unserved or not granted.
    pub async fn group_class(&self, sources: &[Ref]) -> Option<GroupClass> {
        let mut driver: Option<String> = None;
        for s in sources {
            let pvc = self.claims().get(&s.name).await.ok()?;
            let sc = pvc.spec?.storage_class_name?;
            let class = Api::<StorageClass>::all(self.client.clone())
                .get_opt(&sc)
                .await
                .inspect_err(|e| tracing::warn!(storage_class = %sc, error = %e, "cannot read a StorageClass; cutting volumes one by one"))
                .ok()??;
            match &driver {
                None => driver = Some(class.provisioner),
                Some(d) if *d == class.provisioner => {}
                Some(_) => return None,
            }
        }
        let driver = driver?;
        for v in VERSIONS {
            let list = match self
                .group_api(v, "VolumeGroupSnapshotClass")
                .list(&Default::default())
                .await
            {
                Ok(l) => l,
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list VolumeGroupSnapshotClasses; cutting volumes one by one");
                    return None;
                }
            };
            let mut classes: Vec<&DynamicObject> = list
                .items
                .iter()
                .filter(|c| c.data.get("driver").and_then(Value::as_str) == Some(&driver))
                .collect();
            classes.sort_by_key(|c| {
                let default = c
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS))
                    .is_some_and(|v| v == "true");
                (!default, c.metadata.name.clone())
            });
            return classes.first().map(|c| GroupClass {
                version: v.to_string(),
                name: c.metadata.name.clone().unwrap_or_default(),
            });
        }
        None
    }

    /// Cut `sources` with one VolumeGroupSnapshot of `class`; their member snapshots, in
    /// the order given. On failure nothing is left: no group, no label.
    pub async fn cut_group(
        &self,
        sources: &[Ref],
        class: &GroupClass,
        labels: &[(String, String)],
    ) -> Result<Vec<SnapInfo>, WitError> {
        let id = hex::encode(getrandom::u64().unwrap_or_default().to_be_bytes());
        let mut labelled = Vec::new();
        let mut group = None;
        let cut = self
            .label_and_cut(sources, class, labels, &id, &mut labelled, &mut group)
            .await;
        for claim in &labelled {
            let unlabel = json!({"metadata": {"labels": {GROUP_LABEL: null}}});
            if let Err(e) = self
                .claims()
                .patch(claim, &PatchParams::default(), &Patch::Merge(&unlabel))
                .await
            {
                tracing::warn!(claim = %claim, error = %e, "could not remove the group label");
            }
        }
        if cut.is_err()
            && let Some(name) = group
        {
            let _ = self
                .group_api(&class.version, "VolumeGroupSnapshot")
                .delete(&name, &DeleteParams::default())
                .await;
        }
        cut
    }

    async fn label_and_cut(
        &self,
        sources: &[Ref],
        class: &GroupClass,
        labels: &[(String, String)],
        id: &str,
        labelled: &mut Vec<String>,
        group: &mut Option<String>,
    ) -> Result<Vec<SnapInfo>, WitError> {
        for s in sources {
            let label = json!({"metadata": {"labels": {GROUP_LABEL: id}}});
            self.claims()
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&label))
                .await
                .map_err(|e| {
                    err(
                        &format!(
                            "labelling PersistentVolumeClaim {} for a group snapshot",
                            s.name
                        ),
                        e,
                    )
                })?;
            labelled.push(s.name.clone());
        }
        let mut meta_labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        meta_labels.insert("app.kubernetes.io/managed-by".into(), json!("coffer"));
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/{}", class.version),
            "kind": "VolumeGroupSnapshot",
            "metadata": {"generateName": "coffer-group-", "namespace": self.namespace, "labels": meta_labels},
            "spec": {"volumeGroupSnapshotClassName": class.name,
                     "source": {"selector": {"matchLabels": {GROUP_LABEL: id}}}},
        }))
        .map_err(|e| WitError::Internal(e.to_string()))?;
        let api = self.group_api(&class.version, "VolumeGroupSnapshot");
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .map_err(|e| err("creating a VolumeGroupSnapshot", e))?;
        let name = created.metadata.name.clone().unwrap_or_default();
        *group = Some(name.clone());
        let what = format!("VolumeGroupSnapshot {}/{name}", self.namespace);
        let deadline = Instant::now() + CUT_TIMEOUT;
        loop {
            let o = api.get(&name).await.map_err(|e| err(&what, e))?;
            if let Some(msg) = o
                .data
                .pointer("/status/error/message")
                .and_then(Value::as_str)
            {
                return Err(WitError::Io(format!(
                    "{what}: the snapshot driver reports: {msg}"
                )));
            }
            let cut_at = o
                .data
                .pointer("/status/creationTime")
                .and_then(Value::as_str);
            if let Some(cut_at) = cut_at
                && let Some(members) = self.members(&name, sources, cut_at).await?
            {
                return Ok(members);
            }
            if Instant::now() >= deadline {
                return Err(WitError::Timeout(format!(
                    "{what} was not cut (with a snapshot of each of {}) after {}s: does the CSI driver of class {} support group snapshots?",
                    sources
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    CUT_TIMEOUT.as_secs(),
                    class.name
                )));
            }
            tokio::time::sleep(CUT_POLL).await;
        }
    }

    /// The member snapshot of each source claim, once every one exists.
    async fn members(
        &self,
        group: &str,
        sources: &[Ref],
        cut_at: &str,
    ) -> Result<Option<Vec<SnapInfo>>, WitError> {
        let all = self
            .snapshots()
            .list(&Default::default())
            .await
            .map_err(|e| err("listing VolumeSnapshots", e))?;
        let mut out = Vec::new();
        for s in sources {
            let member = all.items.iter().find(|o| {
                group_of(o).as_deref() == Some(group)
                    && o.data
                        .pointer("/spec/source/persistentVolumeClaimName")
                        .and_then(Value::as_str)
                        == Some(&s.name)
            });
            let Some(member) = member else {
                return Ok(None);
            };
            let mut info = self.info(member);
            info.source = s.clone();
            info.cut_at.get_or_insert_with(|| cut_at.to_string());
            out.push(info);
        }
        Ok(Some(out))
    }

    /// Delete the group a member snapshot belongs to (its siblings go with it); false when
    /// `o` is not a member.
    pub async fn delete_group_of(&self, o: &DynamicObject) -> Result<bool, WitError> {
        let Some(group) = group_of(o) else {
            return Ok(false);
        };
        for v in VERSIONS {
            match self
                .group_api(v, "VolumeGroupSnapshot")
                .delete(&group, &DeleteParams::default())
                .await
            {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => return Err(err(&format!("deleting VolumeGroupSnapshot {group}"), e)),
            }
        }
        Ok(true)
    }
}

/// The group a VolumeSnapshot was cut in: its status names it, or its owner.
fn group_of(o: &DynamicObject) -> Option<String> {
    if let Some(g) = o
        .data
        .pointer("/status/volumeGroupSnapshotName")
        .and_then(Value::as_str)
    {
        return Some(g.to_string());
    }
    o.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.kind == "VolumeGroupSnapshot")
        .map(|r| r.name.clone())
}
