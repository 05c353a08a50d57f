//! Host file operations in local mode: the action's scratch directory, files streamed out of
//! and into it, and a file installed into a Workload volume. They run in the host, never as
//! a plugin-chosen program, and only ever touch the scratch directory and the named volume.

use super::{BoxRead, BoxWrite, ExitInfo, RunningProcess};
use crate::wit::WitError;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// A private directory for one action, removed (with its contents) on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// In `parent` (the Workload's TMPDIR, else coffer's temp dir), mode 0700.
    pub fn create(parent: &Path) -> Result<Scratch, WitError> {
        let dir = tempfile::Builder::new()
            .prefix("coffer-scratch.")
            .tempdir_in(parent)
            .map_err(|e| {
                WitError::Io(format!(
                    "making a scratch directory in {}: {e}",
                    parent.display()
                ))
            })?;
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file of the directory by plain name.
    pub fn file(&self, name: &str) -> Result<PathBuf, WitError> {
        if !super::policy::scratch_name(name) {
            return Err(WitError::InvalidArgument(format!(
                "{name:?} is not a plain file name (no `/`, not `.` or `..`)"
            )));
        }
        Ok(self.dir.path().join(name))
    }
}

/// Open without following a symlink at the last component (a tool in the workload could
/// have left one in the scratch directory).
fn open(path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW);
    if write {
        o.write(true).create_new(true).mode(0o600);
    } else {
        o.read(true);
    }
    o.open(path)
}

/// A host "process" that copies a file to its stdout, or its stdin to a file.
struct FileProcess {
    stdin: Option<BoxWrite>,
    stdout: Option<BoxRead>,
    copy: Option<JoinHandle<Result<(), String>>>,
    what: String,
}

pub fn reader(path: PathBuf) -> Result<Box<dyn RunningProcess>, WitError> {
    let file = open(&path, false).map_err(|e| io_error(&path, "reading", e))?;
    let (mut ours, theirs) = tokio::io::duplex(256 << 10);
    let what = format!("reading {}", path.display());
    let copy = tokio::spawn(async move {
        let mut f = tokio::fs::File::from_std(file);
        tokio::io::copy(&mut f, &mut ours)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())?;
        ours.shutdown().await.map_err(|e| e.to_string())
    });
    Ok(Box::new(FileProcess {
        stdin: None,
        stdout: Some(Box::pin(theirs)),
        copy: Some(copy),
        what,
    }))
}

pub fn writer(path: PathBuf) -> Result<Box<dyn RunningProcess>, WitError> {
    let file = open(&path, true).map_err(|e| io_error(&path, "writing", e))?;
    let (theirs, mut ours) = tokio::io::duplex(256 << 10);
    let what = format!("writing {}", path.display());
    let copy = tokio::spawn(async move {
        let mut f = tokio::fs::File::from_std(file);
        tokio::io::copy(&mut ours, &mut f)
            .await
            .map_err(|e| e.to_string())?;
        f.sync_all().await.map_err(|e| e.to_string())
    });
    Ok(Box::new(FileProcess {
        stdin: Some(Box::pin(theirs)),
        stdout: None,
        copy: Some(copy),
        what,
    }))
}

fn io_error(path: &Path, doing: &str, e: std::io::Error) -> WitError {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            WitError::NotFound(format!("{doing} {}: no such file", path.display()))
        }
        std::io::ErrorKind::AlreadyExists => {
            WitError::Conflict(format!("{doing} {}: it exists", path.display()))
        }
        _ => WitError::Io(format!("{doing} {}: {e}", path.display())),
    }
}

#[async_trait::async_trait]
impl RunningProcess for FileProcess {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin.take()
    }
    fn take_stdout(&mut self) -> Option<BoxRead> {
        self.stdout.take()
    }
    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        if let Some(mut w) = self.stdin.take() {
            let _ = w.shutdown().await;
        }
        if let Some(mut r) = self.stdout.take() {
            // Output nobody took is drained so the copy can finish.
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
            });
        }
        let result = match self.copy.take() {
            Some(h) => h.await.unwrap_or_else(|e| Err(e.to_string())),
            None => Ok(()),
        };
        Ok(match result {
            Ok(()) => ExitInfo {
                code: Some(0),
                signal: None,
                stderr: Vec::new(),
            },
            Err(e) => ExitInfo {
                code: Some(1),
                signal: None,
                stderr: format!("{}: {e}", self.what).into_bytes(),
            },
        })
    }
    fn kill(&mut self) {
        if let Some(h) = self.copy.take() {
            h.abort();
        }
    }
}

impl Drop for FileProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copy `src` into directory `volume` as `dest`: written beside it under a temporary name,
/// synced, then renamed into place (or hard-linked, which fails on an existing file, when
/// `replace` is false), so a half-written file never carries the final name.
pub fn install(src: &Path, volume: &Path, dest: &str, replace: bool) -> Result<(), WitError> {
    if !super::policy::scratch_name(dest) || dest.starts_with('.') {
        return Err(WitError::InvalidArgument(format!(
            "{dest:?} is not a plain file name"
        )));
    }
    let meta =
        std::fs::symlink_metadata(volume).map_err(|e| io_error(volume, "opening the volume", e))?;
    if !meta.is_dir() {
        return Err(WitError::InvalidArgument(format!(
            "volume {} is not a directory",
            volume.display()
        )));
    }
    let target = volume.join(dest);
    if !replace && std::fs::symlink_metadata(&target).is_ok() {
        return Err(WitError::Conflict(format!(
            "{} exists; it is replaced only when asked to",
            target.display()
        )));
    }
    let mut input = open(src, false).map_err(|e| io_error(src, "reading", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{dest}.coffer-"))
        .tempfile_in(volume)
        .map_err(|e| io_error(volume, "writing into", e))?;
    std::io::copy(&mut input, &mut tmp.as_file())
        .and_then(|_| owned_like(tmp.as_file(), &meta))
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| io_error(tmp.path(), "writing", e))?;
    if replace {
        tmp.persist(&target)
            .map_err(|e| io_error(&target, "renaming into", e.error))?;
    } else {
        tmp.persist_noclobber(&target)
            .map_err(|e| io_error(&target, "linking into", e.error))?;
    }
    Ok(())
}

/// Mode 0640, owned (when coffer runs as root) by the volume's owner and group: the server
/// that reads the file owns its data directory.
fn owned_like(f: &std::fs::File, volume: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::fchown(f, Some(volume.uid()), Some(volume.gid()))?;
    }
    Ok(())
}
