//! The `snapshot` interface: volume snapshots. On Kubernetes ([`csi::CsiSnapshots`]) a
//! snapshot is a CSI VolumeSnapshot of a PersistentVolumeClaim and a restore is a new PVC
//! whose dataSource is that snapshot; in local mode ([`btrfs::BtrfsSnapshots`]) a snapshot
//! is a read-only btrfs subvolume snapshot of a Workload's volume; where neither applies
//! ([`NoSnapshots`]) calls answer `unavailable`. Grant check and audit are in `wit.rs`.

pub mod archive;
pub mod btrfs;
pub mod csi;
mod csi_group;
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
        crate::wit::abi::snapshot::add_to_linker::<T, HasCap<Snapshot>>(linker, get)?;
        crate::wit::abi::v0_1::snapshot::add_to_linker::<T, HasCap<Snapshot>>(linker, get)
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
    /// When the storage system cut the copy (RFC 3339), once known.
    pub cut_at: Option<String>,
}

#[async_trait::async_trait]
pub trait SnapshotBackend: Send + Sync {
    /// Returns once the point-in-time copy is cut (not when it is ready to use).
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
    /// The snapshot's files as a tar stream (`snapshot.export-tar`).
    async fn export_tar(
        &self,
        snap: &Ref,
        _exclude: Vec<std::path::PathBuf>,
    ) -> Result<crate::cap::exec::BoxRead, WitError> {
        Err(WitError::Unavailable(format!(
            "snapshot {}: exporting a snapshot's files is built for local btrfs snapshots only so far; on Kubernetes, restore it into a claim and back that up with a task pod",
            snap.name
        )))
    }
    /// Unpack a tar into new volume `target` (`snapshot.import-tar`).
    async fn import_tar(&self, target: &Ref) -> Result<archive::Import, WitError> {
        Err(WitError::Unavailable(format!(
            "volume {}: importing an exported snapshot is built for local volumes only so far",
            target.name
        )))
    }
    /// Cut `sources` at one instant, where the storage system can (none: it cannot, and
    /// [`create_group`] decides what to do).
    async fn create_group(
        &self,
        _sources: &[Ref],
        _class: Option<&str>,
        _labels: &[(String, String)],
    ) -> Option<Result<Vec<SnapInfo>, WitError>> {
        None
    }
}

/// One cut across `sources`. A backend that cuts groups atomically does it
/// ([`SnapshotBackend::create_group`]); otherwise volumes are cut one after another, which
/// is one point in time only while the application is quiesced, so it is refused outside a
/// quiesce window (a crash-consistent group needs the storage system's group snapshots).
pub async fn create_group(
    backend: &dyn SnapshotBackend,
    sources: &[Ref],
    class: Option<&str>,
    labels: &[(String, String)],
    quiesced: bool,
) -> Result<Vec<SnapInfo>, WitError> {
    if sources.is_empty() {
        return Err(WitError::InvalidArgument(
            "create-group needs at least one volume".into(),
        ));
    }
    if let Some(cut) = backend.create_group(sources, class, labels).await {
        return cut;
    }
    if sources.len() > 1 && !quiesced {
        return Err(WitError::Unavailable(format!(
            "volumes {} cannot be cut at one instant here: this storage has no group snapshots, so they are cut one by one, which is consistent only inside a quiesce window (runtime.quiesce-begin first)",
            sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut cut = Vec::new();
    for s in sources {
        match backend.create(s, class, labels).await {
            Ok(i) => cut.push(i),
            Err(e) => {
                // Half a group is no group: what was cut goes.
                for i in &cut {
                    let _ = backend.delete(&i.snapshot).await;
                }
                return Err(e);
            }
        }
    }
    Ok(cut)
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
