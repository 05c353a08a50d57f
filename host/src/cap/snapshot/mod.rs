//! The `snapshot` interface: volume snapshots. On Kubernetes ([`csi::CsiSnapshots`]) a
//! snapshot is a CSI VolumeSnapshot of a PersistentVolumeClaim and a restore is a new PVC
//! whose dataSource is that snapshot; in local mode ([`btrfs::BtrfsSnapshots`]) a snapshot
//! is a read-only btrfs subvolume snapshot of a Workload's volume; where neither applies
//! ([`NoSnapshots`]) calls answer `unavailable`. Grant check and audit are in `wit.rs`.

pub mod btrfs;
pub mod csi;
mod wit;

use crate::cap::{Backends, CapView, Capability, Grant, Grants, HasCap};
use crate::wit::WitError;
use std::sync::Arc;
use std::time::Duration;

/// Whether a plugin may take and restore volume snapshots.
pub struct SnapshotGrant(Grant<bool>);

impl SnapshotGrant {
    pub fn new(grants: &Grants) -> SnapshotGrant {
        SnapshotGrant(Grant::new(grants, |c| c.snapshot))
    }

    pub fn check(&self) -> Result<(), WitError> {
        self.0
            .check(|on| *on, || "volume snapshots".into(), "snapshot")
    }
}

/// One call's snapshots: its grant and the mode's backend.
pub struct Snapshot {
    grant: SnapshotGrant,
    backend: Arc<dyn SnapshotBackend>,
}

impl Capability for Snapshot {
    fn build(grants: &Grants, backends: &Backends) -> Snapshot {
        Snapshot {
            grant: SnapshotGrant::new(grants),
            backend: backends
                .get::<Arc<dyn SnapshotBackend>>()
                .unwrap_or_else(|| Arc::new(NoSnapshots)),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        crate::wit::coffer::blueprint::snapshot::add_to_linker::<T, HasCap<Snapshot>>(linker, get)
    }
}

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

/// No volume snapshots in this mode (the harness, unless a test gives it some).
pub struct NoSnapshots;

fn unavailable<T>() -> Result<T, WitError> {
    Err(WitError::Unavailable(
        "volume snapshots are not available here; they need btrfs volumes (local mode) or CSI VolumeSnapshots (Kubernetes)".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_manifest::Capabilities;

    #[test]
    fn snapshots_must_be_declared_and_granted() {
        for (declared, granted, ok) in [
            (true, true, true),
            (true, false, false),
            (false, true, false),
            (false, false, false),
        ] {
            let g = SnapshotGrant::new(&Grants {
                declared: Capabilities {
                    snapshot: declared,
                    ..Default::default()
                },
                granted: Capabilities {
                    snapshot: granted,
                    ..Default::default()
                },
                plugin: "p".into(),
                blueprint: "bp".into(),
            });
            assert_eq!(g.check().is_ok(), ok, "{declared} {granted}");
        }
    }
}
