//! Volume snapshots on Kubernetes: CSI VolumeSnapshots (snapshot.storage.k8s.io/v1) of
//! PersistentVolumeClaims in the subject's namespace; a restore creates a new PVC whose
//! dataSource is the snapshot, sized and shaped like the snapshot's source claim. Several
//! claims are cut at once with a VolumeGroupSnapshot where the driver has them
//! (`csi_group`).

use super::{Ref, SnapInfo, SnapshotBackend};
use crate::cap::kube::client::err;
use crate::wit::WitError;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct CsiSnapshots {
    pub client: Client,
    /// The subject's namespace: the only one an action may snapshot in.
    pub namespace: String,
}

/// Bytes of a Kubernetes quantity (`10Gi`, `500M`, `1073741824`).
fn quantity_bytes(q: &str) -> Option<u64> {
    let units: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| n * mult);
        }
    }
    q.parse().ok()
}

impl CsiSnapshots {
    /// The namespace of `r` (the subject's; no other is allowed), with its name checked
    /// before it goes into a URL.
    fn ns(&self, r: &Ref) -> Result<String, WitError> {
        crate::cap::kube::names::name(&r.name)?;
        match &r.namespace {
            Some(ns) if ns != &self.namespace => Err(WitError::Denied(format!(
                "namespace {ns}: an action may only snapshot volumes in its subject's namespace ({})",
                self.namespace
            ))),
            _ => Ok(self.namespace.clone()),
        }
    }

    pub(super) fn snapshots(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        ));
        Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
    }

    pub(super) fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(super) fn info(&self, o: &DynamicObject) -> SnapInfo {
        let restore_size = o.data.pointer("/status/restoreSize").and_then(|v| match v {
            Value::String(s) => quantity_bytes(s),
            Value::Number(n) => n.as_u64(),
            _ => None,
        });
        SnapInfo {
            snapshot: Ref {
                namespace: Some(self.namespace.clone()),
                name: o.metadata.name.clone().unwrap_or_default(),
            },
            source: Ref {
                namespace: Some(self.namespace.clone()),
                name: o
                    .data
                    .pointer("/spec/source/persistentVolumeClaimName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            },
            ready: o.data.pointer("/status/readyToUse") == Some(&Value::Bool(true)),
            restore_size,
            cut_at: o
                .data
                .pointer("/status/creationTime")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

impl CsiSnapshots {
    /// When the driver cut snapshot `o` by its bound VolumeSnapshotContent
    /// (`status.creationTime`, nanoseconds since the epoch), which the sidecar sets from
    /// the driver's answer — the VolumeSnapshot's own copy of it can come a sync later.
    async fn content_cut_at(&self, o: &DynamicObject) -> Option<String> {
        let bound = o
            .data
            .pointer("/status/boundVolumeSnapshotContentName")
            .and_then(Value::as_str)?;
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshotContent",
        ));
        let content = Api::<DynamicObject>::all_with(self.client.clone(), &ar)
            .get_opt(bound)
            .await
            .inspect_err(|e| tracing::debug!(content = %bound, error = %e, "cannot read a VolumeSnapshotContent"))
            .ok()??;
        let nanos = content.data.pointer("/status/creationTime")?.as_i64()?;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
            .ok()?
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    }

    /// Until the driver has cut snapshot `name`: its `status.creationTime` is set, or its
    /// bound content's (the external-snapshotter sets them from the driver's answer, before
    /// the copy is ready to use), or the driver reports an error.
    async fn wait_cut(&self, name: &str) -> Result<SnapInfo, WitError> {
        let deadline = Instant::now() + CUT_TIMEOUT;
        loop {
            let o = self
                .snapshots()
                .get(name)
                .await
                .map_err(|e| err(&format!("VolumeSnapshot {name}"), e))?;
            if let Some(msg) = o
                .data
                .pointer("/status/error/message")
                .and_then(Value::as_str)
            {
                return Err(WitError::Io(format!(
                    "VolumeSnapshot {}/{name}: the snapshot driver reports: {msg}",
                    self.namespace
                )));
            }
            let mut i = self.info(&o);
            if i.cut_at.is_none() {
                i.cut_at = self.content_cut_at(&o).await;
            }
            if i.cut_at.is_some() {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                return Err(WitError::Timeout(format!(
                    "VolumeSnapshot {}/{name} was not cut after {}s: is a CSI snapshotter running for its VolumeSnapshotClass?",
                    self.namespace,
                    CUT_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(CUT_POLL).await;
        }
    }
}

/// How long a snapshot may take to be cut (an application may be quiesced meanwhile: its
/// own, shorter, limit applies too).
pub(super) const CUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Polled often: the application may be waiting on the cut.
pub(super) const CUT_POLL: Duration = Duration::from_millis(50);

#[async_trait::async_trait]
impl SnapshotBackend for CsiSnapshots {
    async fn create(
        &self,
        source: &Ref,
        class: Option<&str>,
        labels: &[(String, String)],
    ) -> Result<SnapInfo, WitError> {
        let ns = self.ns(source)?;
        // A snapshot of a claim that does not exist would only fail later, in the driver.
        self.claims()
            .get(&source.name)
            .await
            .map_err(|e| err(&format!("PersistentVolumeClaim {ns}/{}", source.name), e))?;
        let mut labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        labels.insert("app.kubernetes.io/managed-by".into(), json!("coffer"));
        let mut spec = json!({"source": {"persistentVolumeClaimName": source.name}});
        if let Some(c) = class {
            spec["volumeSnapshotClassName"] = json!(c);
        }
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"generateName": format!("{}-", source.name), "namespace": ns, "labels": labels},
            "spec": spec,
        }))
        .map_err(|e| WitError::Internal(e.to_string()))?;
        let created = self
            .snapshots()
            .create(&PostParams::default(), &obj)
            .await
            .map_err(|e| err(&format!("creating a VolumeSnapshot of {}", source.name), e))?;
        let name = created.metadata.name.clone().unwrap_or_default();
        self.wait_cut(&name).await
    }

    async fn wait_ready(&self, snap: &Ref, timeout: Duration) -> Result<SnapInfo, WitError> {
        self.ns(snap)?;
        let deadline = Instant::now() + timeout;
        loop {
            let o = self
                .snapshots()
                .get(&snap.name)
                .await
                .map_err(|e| err(&format!("VolumeSnapshot {}", snap.name), e))?;
            if let Some(msg) = o
                .data
                .pointer("/status/error/message")
                .and_then(Value::as_str)
            {
                return Err(WitError::Io(format!(
                    "VolumeSnapshot {}/{}: the snapshot driver reports: {msg}",
                    self.namespace, snap.name
                )));
            }
            let i = self.info(&o);
            if i.ready {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                return Err(WitError::Timeout(format!(
                    "VolumeSnapshot {}/{} was not ready to use after {timeout:?}",
                    self.namespace, snap.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn restore(
        &self,
        snap: &Ref,
        target: &Ref,
        storage_class: Option<&str>,
    ) -> Result<(), WitError> {
        self.ns(snap)?;
        let ns = self.ns(target)?;
        let s = self
            .snapshots()
            .get(&snap.name)
            .await
            .map_err(|e| err(&format!("VolumeSnapshot {}", snap.name), e))?;
        let info = self.info(&s);
        if !info.ready {
            return Err(WitError::Unavailable(format!(
                "VolumeSnapshot {ns}/{} is not ready to use yet (wait-ready first)",
                snap.name
            )));
        }
        if self
            .claims()
            .get_opt(&target.name)
            .await
            .map_err(|e| err(&format!("PersistentVolumeClaim {}", target.name), e))?
            .is_some()
        {
            return Err(WitError::Conflict(format!(
                "PersistentVolumeClaim {ns}/{} exists; a snapshot is restored into a new claim, never over one",
                target.name
            )));
        }
        // Shaped like the source claim (when it is still there), at least the snapshot's size.
        let source = self
            .claims()
            .get_opt(&info.source.name)
            .await
            .ok()
            .flatten();
        let source_spec = source.and_then(|c| c.spec);
        let access_modes = source_spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
        let class = storage_class.map(String::from).or_else(|| {
            source_spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
        });
        let source_size = source_spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| quantity_bytes(&q.0));
        let size = source_size
            .unwrap_or(0)
            .max(info.restore_size.unwrap_or(0))
            .max(1 << 20);
        let mut spec = json!({
            "accessModes": access_modes,
            "resources": {"requests": {"storage": size.to_string()}},
            "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap.name},
        });
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": target.name, "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "coffer"}},
            "spec": spec,
        }))
        .map_err(|e| WitError::Internal(e.to_string()))?;
        self.claims()
            .create(&PostParams::default(), &pvc)
            .await
            .map_err(|e| {
                err(
                    &format!("creating PersistentVolumeClaim {}", target.name),
                    e,
                )
            })?;
        Ok(())
    }

    async fn create_group(
        &self,
        sources: &[Ref],
        _class: Option<&str>,
        labels: &[(String, String)],
    ) -> Option<Result<Vec<SnapInfo>, WitError>> {
        if sources.len() < 2 {
            return None;
        }
        for s in sources {
            if let Err(e) = self.ns(s) {
                return Some(Err(e));
            }
        }
        let class = self.group_class(sources).await?;
        Some(self.cut_group(sources, &class, labels).await)
    }

    async fn delete(&self, snap: &Ref) -> Result<(), WitError> {
        self.ns(snap)?;
        // A member of a group goes with its group.
        if let Ok(o) = self.snapshots().get(&snap.name).await
            && self.delete_group_of(&o).await?
        {
            return Ok(());
        }
        match self
            .snapshots()
            .delete(&snap.name, &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(err(&format!("deleting VolumeSnapshot {}", snap.name), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantities() {
        assert_eq!(super::quantity_bytes("10Gi"), Some(10 << 30));
        assert_eq!(super::quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(super::quantity_bytes("1234"), Some(1234));
        assert_eq!(super::quantity_bytes("x"), None);
    }
}
