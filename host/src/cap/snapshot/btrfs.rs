//! Local volume snapshots on btrfs: a Workload's `spec.volumes` name directories; a snapshot
//! of one is a read-only btrfs subvolume snapshot — an atomic cut of the whole volume, taken
//! in one ioctl — kept beside it in `<filesystem>/.coffer-snapshots/<workload>/`. A volume on
//! any other filesystem, or a btrfs directory that is not a subvolume, is refused with what
//! to do: coffer never passes a copy off as a cut. A restore makes a new directory the user
//! named (params `volumes: {NAME: NEWPATH}`), never one that has content: a writable
//! snapshot of the snapshot when it is on the same filesystem (instant), else a copy.
//! The `btrfs` command (btrfs-progs) does the work.

use super::{Ref, SnapInfo, SnapshotBackend};
use crate::wit::WitError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// statfs(2)'s f_type of btrfs.
const BTRFS_MAGIC: i64 = 0x9123_683e;
/// The inode number of every btrfs subvolume's root directory.
const SUBVOLUME_INODE: u64 = 256;
/// Where snapshots go, at the root of the volume's filesystem.
const SNAPSHOT_DIR: &str = ".coffer-snapshots";

pub struct BtrfsSnapshots {
    /// The Workload's name (snapshots are kept per workload).
    pub workload: String,
    /// `spec.volumes`: name -> directory.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Where a restore may create a volume: the paths the action's params `volumes` name.
    pub targets: BTreeSet<PathBuf>,
}

fn local_only(r: &Ref, what: &str) -> Result<(), WitError> {
    match &r.namespace {
        None => Ok(()),
        Some(ns) => Err(WitError::Denied(format!(
            "{what} in namespace {ns:?}: local mode has no namespaces; name the volume only"
        ))),
    }
}

/// The filesystem type of `p` (statfs f_type).
fn fs_type(p: &Path) -> Result<i64, WitError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| WitError::InvalidArgument(format!("{} has a NUL byte", p.display())))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a struct statfs this function owns.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(WitError::Io(format!(
            "{}: {}",
            p.display(),
            std::io::Error::last_os_error()
        )));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    Ok(st.f_type as i64)
}

/// The mount point of the filesystem holding `p` (the longest mount point it is under).
fn mount_point(p: &Path) -> Result<PathBuf, WitError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| WitError::Io(format!("reading /proc/self/mountinfo: {e}")))?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| p.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .ok_or_else(|| WitError::Io(format!("{} is under no mount point", p.display())))
}

/// A snapshot's name is ours to read as a path component: lowercase letters, digits, '-'.
fn check_name(name: &str) -> Result<(), WitError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(WitError::InvalidArgument(format!(
            "{name:?} is not a snapshot name coffer made"
        )))
    }
}

async fn btrfs(args: &[&std::ffi::OsStr]) -> Result<(), WitError> {
    let out = tokio::process::Command::new("btrfs")
        .args(args)
        .output()
        .await
        .map_err(|e| {
            WitError::Unavailable(format!(
                "running btrfs: {e} (install btrfs-progs for local volume snapshots)"
            ))
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(WitError::Io(format!(
        "btrfs {}: {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

impl BtrfsSnapshots {
    /// The directory of volume `name`, checked to be a btrfs subvolume that can be cut.
    fn volume(&self, name: &str) -> Result<(PathBuf, PathBuf), WitError> {
        let dir = self.volumes.get(name).ok_or_else(|| {
            WitError::NotFound(format!(
                "workload {} has no volume {name:?} (spec.volumes: {})",
                self.workload,
                self.volumes.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let dir = dir
            .canonicalize()
            .map_err(|e| WitError::NotFound(format!("volume {name} ({}): {e}", dir.display())))?;
        let t = fs_type(&dir)?;
        if t != BTRFS_MAGIC {
            return Err(WitError::Unavailable(format!(
                "volume {name} ({}) is not on btrfs (filesystem type {t:#x}), which is the only filesystem coffer can cut an atomic snapshot of locally; move it onto a btrfs subvolume (`btrfs subvolume create`), or back it up with a plugin's own consistent dump",
                dir.display()
            )));
        }
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&dir)
            .map_err(|e| WitError::Io(format!("{}: {e}", dir.display())))?
            .ino();
        if ino != SUBVOLUME_INODE {
            return Err(WitError::Unavailable(format!(
                "volume {name} ({}) is a directory on btrfs but not a subvolume, and only a subvolume can be snapshotted; make it one (`btrfs subvolume create NEW`, move the data in)",
                dir.display()
            )));
        }
        let mount = mount_point(&dir)?;
        if mount == dir {
            return Err(WitError::Unavailable(format!(
                "volume {name} ({}) is the root of its btrfs filesystem; snapshots go beside the volume, so make the volume a subvolume under it (`btrfs subvolume create {}/{name}`)",
                dir.display(),
                dir.display()
            )));
        }
        Ok((dir, mount))
    }

    /// The snapshot directories of this workload's volumes' filesystems.
    fn snapshot_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .volumes
            .values()
            .filter_map(|v| v.canonicalize().ok())
            .filter_map(|v| mount_point(&v).ok())
            .map(|m| m.join(SNAPSHOT_DIR).join(&self.workload))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn find(&self, snap: &Ref) -> Result<PathBuf, WitError> {
        local_only(snap, "a snapshot")?;
        check_name(&snap.name)?;
        self.snapshot_dirs()
            .into_iter()
            .map(|d| d.join(&snap.name))
            .find(|p| p.is_dir())
            .ok_or_else(|| {
                WitError::NotFound(format!(
                    "no snapshot {} of workload {}",
                    snap.name, self.workload
                ))
            })
    }

    /// Where a restore or an import makes volume `target`: a directory the action's params
    /// name, absent or empty (an empty one is removed to make way), whose parent is made.
    fn new_volume(&self, target: &Ref) -> Result<PathBuf, WitError> {
        local_only(target, "a restore target")?;
        let to = PathBuf::from(&target.name);
        if !self.targets.contains(&to) {
            return Err(WitError::Denied(format!(
                "restoring into {}: a restore creates only a directory the action's params name (volumes: {{NAME: NEWPATH}}); named: {}",
                to.display(),
                self.targets
                    .iter()
                    .map(|t| t.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        match std::fs::read_dir(&to) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(WitError::Conflict(format!(
                        "{} is not empty; a restore never overwrites a volume, name a new directory",
                        to.display()
                    )));
                }
                std::fs::remove_dir(&to)
                    .map_err(|e| WitError::Io(format!("{}: {e}", to.display())))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WitError::Io(format!("{}: {e}", to.display()))),
        }
        let parent = to.parent().ok_or_else(|| {
            WitError::InvalidArgument(format!("{} has no parent directory", to.display()))
        })?;
        std::fs::create_dir_all(parent)
            .map_err(|e| WitError::Io(format!("creating {}: {e}", parent.display())))?;
        Ok(to)
    }

    fn info(&self, snap: &str, volume: &str) -> SnapInfo {
        SnapInfo {
            snapshot: Ref {
                namespace: None,
                name: snap.to_string(),
            },
            source: Ref {
                namespace: None,
                name: volume.to_string(),
            },
            // A btrfs snapshot is whole once the ioctl returns.
            ready: true,
            restore_size: None,
            cut_at: None,
        }
    }
}

#[async_trait::async_trait]
impl SnapshotBackend for BtrfsSnapshots {
    async fn create(
        &self,
        source: &Ref,
        _class: Option<&str>,
        _labels: &[(String, String)],
    ) -> Result<SnapInfo, WitError> {
        local_only(source, "a volume")?;
        let (dir, mount) = self.volume(&source.name)?;
        let parent = mount.join(SNAPSHOT_DIR).join(&self.workload);
        std::fs::create_dir_all(&parent)
            .map_err(|e| WitError::Io(format!("creating {}: {e}", parent.display())))?;
        let name = format!(
            "{}-{}-{}",
            source.name,
            jiff::Timestamp::now().strftime("%Y%m%d%H%M%S"),
            hex::encode(getrandom::u32().unwrap_or_default().to_be_bytes())
        );
        let target = parent.join(&name);
        btrfs(&[
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            "-r".as_ref(),
            dir.as_os_str(),
            target.as_os_str(),
        ])
        .await?;
        tracing::info!(volume = %source.name, snapshot = %target.display(), "read-only btrfs snapshot cut");
        Ok(SnapInfo {
            cut_at: Some(crate::model::now_rfc3339_ms()),
            ..self.info(&name, &source.name)
        })
    }

    async fn wait_ready(&self, snap: &Ref, _timeout: Duration) -> Result<SnapInfo, WitError> {
        self.find(snap)?;
        // Snapshots are named `<volume>-<time>-<rand>`; the longest volume name that
        // prefixes it (volumes `data` and `data-wal` both prefix `data-wal-…`).
        let volume = self
            .volumes
            .keys()
            .filter(|v| snap.name.starts_with(&format!("{v}-")))
            .max_by_key(|v| v.len())
            .cloned()
            .unwrap_or_default();
        Ok(self.info(&snap.name, &volume))
    }

    async fn restore(
        &self,
        snap: &Ref,
        target: &Ref,
        _storage_class: Option<&str>,
    ) -> Result<(), WitError> {
        let from = self.find(snap)?;
        let to = self.new_volume(target)?;
        let parent = to.parent().expect("new_volume checks the parent");
        let same_fs = fs_type(parent)? == BTRFS_MAGIC
            && mount_point(&parent.canonicalize().unwrap_or(parent.into()))? == mount_point(&from)?;
        if same_fs {
            // A writable snapshot of the snapshot: instant, shares every block.
            btrfs(&[
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                from.as_os_str(),
                to.as_os_str(),
            ])
            .await
        } else {
            let out = tokio::process::Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(&from)
                .arg(&to)
                .output()
                .await
                .map_err(|e| WitError::Io(format!("running cp: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(WitError::Io(format!(
                    "copying {} to {}: {}",
                    from.display(),
                    to.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        }
    }

    async fn export_tar(
        &self,
        snap: &Ref,
        exclude: Vec<PathBuf>,
    ) -> Result<crate::cap::exec::BoxRead, WitError> {
        let dir = self.find(snap)?;
        Ok(super::archive::tar_of(dir, exclude))
    }

    async fn import_tar(&self, target: &Ref) -> Result<super::archive::Import, WitError> {
        let to = self.new_volume(target)?;
        super::archive::untar_into(to)
    }

    async fn delete(&self, snap: &Ref) -> Result<(), WitError> {
        let path = self.find(snap)?;
        btrfs(&["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_volume_off_btrfs_is_refused_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let b = BtrfsSnapshots {
            workload: "w".into(),
            volumes: BTreeMap::from([("data".to_string(), dir.path().to_path_buf())]),
            targets: BTreeSet::new(),
        };
        let r = |ns: Option<&str>, n: &str| Ref {
            namespace: ns.map(String::from),
            name: n.into(),
        };
        if fs_type(dir.path()).unwrap() != BTRFS_MAGIC {
            match b.create(&r(None, "data"), None, &[]).await {
                Err(WitError::Unavailable(m)) => assert!(m.contains("not on btrfs"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            b.create(&r(None, "logs"), None, &[]).await,
            Err(WitError::NotFound(_))
        ));
        assert!(matches!(
            b.create(&r(Some("db"), "data"), None, &[]).await,
            Err(WitError::Denied(_))
        ));
        for bad in ["../etc", "a/b", "", "X"] {
            assert!(
                matches!(
                    b.delete(&r(None, bad)).await,
                    Err(WitError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }
}
