//! Snapshots that leave the storage system: a snapshot's files exported as a tar into the
//! location (the host makes the tar and streams it through the zstd/age/sha256 pipeline;
//! no byte enters the plugin), and an exported snapshot restored into a new volume.

use crate::location::{Compression, ObjectInfo, PutOptions, Store};
use crate::snapshot::{self, SnapshotInfo, SnapshotRef, VolumeRef};
use crate::types::Error;
use crate::{Action, ActionOutput, ActionRequest, Artifact};
use std::collections::BTreeMap;

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

/// A small file added to a restored volume beside its archive: what the application needs
/// to start from the copy (PostgreSQL's `backup_label`, a setting appended to its config).
pub struct AddedFile {
    /// The volume of the restore point it goes into.
    pub volume: String,
    /// Relative to the volume's root.
    pub path: String,
    pub data: Vec<u8>,
    /// Add to the end of the archive's file (made if absent); otherwise a new file.
    pub append: bool,
}

/// Restore the exported snapshot at `key` of `store` into new volume `target` (locally a
/// directory the action's params name in `volumes`), with the `added` files written into
/// it. The volume appears only whole: a download that fails leaves nothing there. The
/// archive's bytes.
pub fn import_snapshot(
    store: &Store,
    key: &str,
    target: &VolumeRef,
    added: &[&AddedFile],
) -> Result<u64, Error> {
    let import = snapshot::import_tar(target)?;
    let stream = import
        .take_stream()
        .ok_or_else(|| crate::internal("the import's stream was taken already"))?;
    for f in added {
        import.add_file(&f.path, &f.data, f.append)?;
    }
    match store.get_into(key, stream).and_then(|t| t.wait()) {
        Ok(_) => import.finish(true),
        // The unpacking's own error says more than the broken pipe the download saw.
        Err(e) => Err(import.finish(false).err().unwrap_or(e)),
    }
}

/// The volumes of the subject named `names` (the Workload's `spec.volumes` locally, the
/// subject's claims on Kubernetes).
pub fn refs(names: &[String]) -> Vec<VolumeRef> {
    names
        .iter()
        .map(|v| VolumeRef {
            namespace: None,
            name: v.clone(),
        })
        .collect()
}

/// The volume artifacts of a restore point (metadata `kind: volume`, `volume: NAME`).
pub fn volume_artifacts(artifacts: &[Artifact]) -> impl Iterator<Item = &Artifact> {
    artifacts
        .iter()
        .filter(|a| crate::meta(a, "kind") == Some("volume"))
}

/// Problems with a restore's `volumes: {NAME: NEW}` params: every volume of the restore
/// point needs a new place.
pub fn check_targets(targets: &BTreeMap<String, String>, artifacts: &[Artifact]) -> Vec<String> {
    volume_artifacts(artifacts)
        .map(|a| crate::meta(a, "volume").unwrap_or_default())
        .filter(|v| !targets.contains_key(*v))
        .map(|v| format!("params.volumes: name a new volume for {v:?} ({v}: NEW)"))
        .collect()
}

/// Export each cut (once ready) to `volumes/<volume>.tar`, leaving out `exclude`; one
/// artifact per volume, `volume-<volume>`, with metadata `kind: volume`, `volume`,
/// `snapshot`, `cutAt` and `extra`.
pub fn export_cuts(
    store: &Store,
    cuts: &[SnapshotInfo],
    exclude: &[&str],
    extra: &[(&str, &str)],
) -> Result<Vec<Artifact>, Error> {
    let mut artifacts = Vec::new();
    for (i, cut) in cuts.iter().enumerate() {
        crate::log::progress("export", i as u64, Some(cuts.len() as u64));
        let ready = snapshot::wait_ready(&cut.snapshot, 3_600_000)?;
        let volume = &cut.source.name;
        let info = export_snapshot(
            store,
            &ready.snapshot,
            &format!("volumes/{volume}.tar"),
            exclude,
        )?;
        artifacts.push(volume_artifact(volume, cut, &info, extra));
    }
    crate::log::progress("export", cuts.len() as u64, Some(cuts.len() as u64));
    Ok(artifacts)
}

/// The artifact of volume `volume` cut as `cut`, stored as `info`.
pub fn volume_artifact(
    volume: &str,
    cut: &SnapshotInfo,
    info: &ObjectInfo,
    extra: &[(&str, &str)],
) -> Artifact {
    let mut a = crate::artifact(&format!("volume-{volume}"), "default", info);
    a.metadata = [
        ("kind", "volume"),
        ("volume", volume),
        ("snapshot", cut.snapshot.name.as_str()),
        ("cutAt", cut.cut_at.as_deref().unwrap_or_default()),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    a
}

/// Delete the cuts (exported, or of a backup that failed); a snapshot that cannot be
/// deleted is logged, not an error: the backup's outcome does not depend on it.
pub fn delete_cuts(cuts: &[SnapshotInfo]) {
    for c in cuts {
        if let Err(e) = snapshot::delete(&c.snapshot) {
            crate::log::warn(
                "a snapshot could not be deleted",
                &[
                    ("snapshot", &c.snapshot.name),
                    ("error", &crate::error_text(&e)),
                ],
            );
        }
    }
}

/// Restore every volume of the restore point into its new place in `targets`: an
/// exported one is unpacked (with the `added` files for it), a kept snapshot (metadata
/// `kept: true`) restored. The `volume=target` pairs done.
pub fn restore_volumes(
    store: &Store,
    artifacts: &[Artifact],
    targets: &BTreeMap<String, String>,
    storage_class: Option<&str>,
    added: &[AddedFile],
) -> Result<Vec<String>, Error> {
    let mut restored = Vec::new();
    for a in volume_artifacts(artifacts) {
        let v = crate::meta(a, "volume").unwrap_or_default();
        let target = targets
            .get(v)
            .ok_or_else(|| crate::invalid(format!("params.volumes: no new volume for {v:?}")))?;
        let to = VolumeRef {
            namespace: None,
            name: target.clone(),
        };
        let files: Vec<&AddedFile> = added.iter().filter(|f| f.volume == v).collect();
        if crate::meta(a, "kept") == Some("true") {
            if !files.is_empty() {
                return Err(crate::invalid(format!(
                    "volume {v:?} is a kept snapshot: files cannot be added to it on restore; \
                     back it up with the snapshot exported"
                )));
            }
            let snap = SnapshotRef {
                namespace: None,
                name: crate::meta(a, "snapshot").unwrap_or_default().to_string(),
            };
            snapshot::restore(&snap, &to, storage_class)?;
        } else {
            let bytes = import_snapshot(store, &a.key, &to, &files)?;
            crate::log::info(
                "volume restored",
                &[
                    ("volume", v),
                    ("into", target),
                    ("bytes", &bytes.to_string()),
                ],
            );
        }
        restored.push(format!("{v}={target}"));
    }
    Ok(restored)
}

/// One artifact per cut: with `export`, its tar in the location (the snapshot is the
/// caller's to delete then); otherwise, once ready, a small record naming the kept
/// snapshot (metadata `kept: true`), which `delete_kept` removes with the restore point.
pub fn record_cuts(
    store: &Store,
    cuts: &[SnapshotInfo],
    export: bool,
) -> Result<Vec<Artifact>, Error> {
    if export {
        return export_cuts(store, cuts, &[], &[("kept", "false")]);
    }
    let mut artifacts = Vec::new();
    for cut in cuts {
        let ready = snapshot::wait_ready(&cut.snapshot, 3_600_000)?;
        let volume = &cut.source.name;
        let info = store.put_bytes(
            &format!("volumes/{volume}.snapshot"),
            ready.snapshot.name.as_bytes(),
            &crate::compressed(),
        )?;
        artifacts.push(volume_artifact(volume, cut, &info, &[("kept", "true")]));
    }
    Ok(artifacts)
}

/// Delete the kept snapshots a restore point names (one already gone is fine).
pub fn delete_kept(artifacts: &[Artifact]) -> Result<(), Error> {
    for a in volume_artifacts(artifacts) {
        if let Some(name) = crate::meta(a, "snapshot")
            && crate::meta(a, "kept") == Some("true")
        {
            match snapshot::delete(&SnapshotRef {
                namespace: None,
                name: name.to_string(),
            }) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Where a restore puts each volume of the restore point.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreVolumesParams {
    /// A new volume per volume of the restore point: a directory (absent or empty) locally,
    /// a new PersistentVolumeClaim name on Kubernetes.
    pub volumes: BTreeMap<String, String>,
    /// The StorageClass of restored claims (Kubernetes; default: the source claim's).
    pub storage_class: Option<String>,
}

/// The usual `restore` of a snapshot-based plugin: every volume into the new place
/// `volumes: {NAME: NEW}` names — an exported one unpacked, a kept one restored.
pub struct RestoreVolumes;

impl Action for RestoreVolumes {
    const NAME: &'static str = "restore";
    type Params = RestoreVolumesParams;

    fn check(p: &RestoreVolumesParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        crate::checked(check_targets(&p.volumes, &req.input_artifacts))
    }

    fn run(p: RestoreVolumesParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        let store = crate::location::open("default")?;
        let restored = restore_volumes(
            &store,
            &req.input_artifacts,
            &p.volumes,
            p.storage_class.as_deref(),
            &[],
        )?;
        Ok(ActionOutput {
            artifacts: vec![],
            outputs: vec![("restored".into(), restored.join(","))],
        })
    }
}

/// The usual `delete` of a snapshot-based plugin: its kept snapshots, then its objects.
pub struct DeleteVolumes;

impl Action for DeleteVolumes {
    const NAME: &'static str = "delete";
    type Params = crate::NoParams;

    fn run(_: crate::NoParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        delete_kept(&req.input_artifacts)?;
        crate::delete_input_artifacts(req, "default")
    }
}

/// The end of a backup that cut `cuts` in a window of `window_ms`: each cut recorded
/// ([`record_cuts`]: exported, or kept), the exported ones — or all of them, when the
/// backup fails — deleted, and the outputs `windowMs`, `volumes`, `cutAt`, `snapshots`.
pub fn finish_cuts(
    cuts: &[SnapshotInfo],
    window_ms: u64,
    export: bool,
    volumes: &[String],
) -> Result<ActionOutput, Error> {
    let store = crate::location::open("default")?;
    let recorded = record_cuts(&store, cuts, export);
    // No restore point would name them.
    if export || recorded.is_err() {
        delete_cuts(cuts);
    }
    Ok(ActionOutput {
        artifacts: recorded?,
        outputs: vec![
            ("windowMs".into(), window_ms.to_string()),
            ("volumes".into(), volumes.join(",")),
            (
                "cutAt".into(),
                cuts.first()
                    .and_then(|c| c.cut_at.clone())
                    .unwrap_or_default(),
            ),
            (
                "snapshots".into(),
                cuts.iter()
                    .map(|c| c.snapshot.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ],
    })
}
