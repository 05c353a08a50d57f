//! Snapshots that leave the storage system: a snapshot's files exported as a tar into the
//! location (the host makes the tar and streams it through the zstd/age/sha256 pipeline;
//! no byte enters the plugin), and an exported snapshot restored into a new volume.

use crate::location::{Compression, ObjectInfo, PutOptions, Store};
use crate::snapshot::{self, SnapshotRef, VolumeRef};
use crate::types::Error;

/// Export snapshot `snap` to `key` of `store`, zstd-compressed, leaving out the paths in
/// `exclude` (relative to the volume's root); the stored object's info.
pub fn export_snapshot(
    store: &Store,
    snap: &SnapshotRef,
    key: &str,
    exclude: &[&str],
) -> Result<ObjectInfo, Error> {
    let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
    let tar = snapshot::export_tar(snap, &exclude)?;
    let opts = PutOptions {
        compression: Compression::Zstd,
        content_type: Some("application/x-tar".into()),
        metadata: vec![],
    };
    store.put(key, tar, &opts)?.wait()
}

/// Restore the exported snapshot at `key` of `store` into new volume `target` (locally a
/// directory the action's params name in `volumes`). The volume appears only whole: a
/// download that fails leaves nothing there. The archive's bytes.
pub fn import_snapshot(store: &Store, key: &str, target: &VolumeRef) -> Result<u64, Error> {
    let import = snapshot::import_tar(target)?;
    let stream = import
        .take_stream()
        .ok_or_else(|| crate::internal("the import's stream was taken already"))?;
    match store.get_into(key, stream).and_then(|t| t.wait()) {
        Ok(_) => import.finish(true),
        // The unpacking's own error says more than the broken pipe the download saw.
        Err(e) => Err(import.finish(false).err().unwrap_or(e)),
    }
}
