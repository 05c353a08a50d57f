//! The `snapshot` interface: volume snapshots. On Kubernetes ([`csi::CsiSnapshots`]) a
//! snapshot is a CSI VolumeSnapshot of a PersistentVolumeClaim and a restore is a new PVC
//! whose dataSource is that snapshot; in local mode ([`NoSnapshots`]) calls answer
//! `unavailable`. Grant check and audit are in `wit.rs`.

pub mod csi;
mod wit;

use crate::runtime::bindings::WitError;
use std::time::Duration;

/// A snapshot or a volume (PVC), by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapInfo {
    pub snapshot: Ref,
    pub source: Ref,
    pub ready: bool,
    pub restore_size: Option<u64>,
}

#[async_trait::async_trait]
pub trait SnapshotBackend: Send + Sync {
    async fn create(
        &self,
        source: &Ref,
        class: Option<&str>,
        labels: &[(String, String)],
    ) -> Result<SnapInfo, WitError>;
    /// Until ready, a reported error, or the timeout.
    async fn wait_ready(&self, snap: &Ref, timeout: Duration) -> Result<SnapInfo, WitError>;
    /// Into a new volume; an existing one is never overwritten.
    async fn restore(
        &self,
        snap: &Ref,
        target: &Ref,
        storage_class: Option<&str>,
    ) -> Result<(), WitError>;
    async fn delete(&self, snap: &Ref) -> Result<(), WitError>;
}

/// Local mode: no volume snapshots (yet).
pub struct NoSnapshots;

fn unavailable<T>() -> Result<T, WitError> {
    Err(WitError::Unavailable(
        "volume snapshots are not available in local mode; they need the kubernetes backend (CSI VolumeSnapshots)".into(),
    ))
}

#[async_trait::async_trait]
impl SnapshotBackend for NoSnapshots {
    async fn create(
        &self,
        _: &Ref,
        _: Option<&str>,
        _: &[(String, String)],
    ) -> Result<SnapInfo, WitError> {
        unavailable()
    }
    async fn wait_ready(&self, _: &Ref, _: Duration) -> Result<SnapInfo, WitError> {
        unavailable()
    }
    async fn restore(&self, _: &Ref, _: &Ref, _: Option<&str>) -> Result<(), WitError> {
        unavailable()
    }
    async fn delete(&self, _: &Ref) -> Result<(), WitError> {
        unavailable()
    }
}
