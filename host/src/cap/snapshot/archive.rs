//! A local snapshot as a tar stream, and a tar stream unpacked into a new directory: how a
//! snapshot leaves the machine (`snapshot.export-tar`, stored by `location.put` through the
//! zstd/age/sha256 pipeline) and comes back (`snapshot.import-tar`). Owners, modes, times
//! and symlinks are kept (symlinks as links, never followed); sockets, which tar cannot
//! hold, are left out. An import unpacks beside the target and renames it into place only
//! once the archive ended well, so a cut-short or corrupt stream leaves nothing at the
//! target.

use crate::cap::exec::{BoxRead, BoxWrite};
use crate::wit::WitError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

/// Bytes buffered between the thread reading or writing files and the stream.
const PIPE: usize = 1 << 20;

/// The files of `dir` as a tar, made on a thread as the stream is read. An error reading
/// a file ends the stream with that error (never with a clean end that would pass a
/// partial tree off as whole).
pub fn tar_of(dir: PathBuf, exclude: Vec<PathBuf>) -> BoxRead {
    let (reader, writer) = tokio::io::duplex(PIPE);
    let failed: Arc<OnceLock<String>> = Arc::default();
    let poisoned = Arc::new(AtomicBool::new(false));
    let sink = Poisonable {
        inner: SyncIoBridge::new(writer),
        poisoned: poisoned.clone(),
    };
    let outcome = failed.clone();
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(sink);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        // The root first: the restored volume's own owner and mode are the snapshot's
        // (a server that owns its data directory must own the restored one).
        let archived = b
            .append_path_with_name(&dir, ".")
            .and_then(|_| append_tree(&mut b, &dir, Path::new(""), &exclude))
            .and_then(|_| b.finish());
        if let Err(e) = archived {
            tracing::error!(dir = %dir.display(), error = %e, "archiving the snapshot failed");
            // No end marker may follow (the builder writes one when dropped).
            poisoned.store(true, Ordering::SeqCst);
            let _ = outcome.set(format!("archiving {}: {e}", dir.display()));
        }
    });
    Box::pin(Checked {
        inner: reader,
        failed,
    })
}

/// The producer's writer: refuses every write once poisoned.
struct Poisonable<W> {
    inner: W,
    poisoned: Arc<AtomicBool>,
}

impl<W: Write> Write for Poisonable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the archive failed"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The reading end: the end of the stream is an error when the producer failed.
struct Checked {
    inner: tokio::io::DuplexStream,
    failed: Arc<OnceLock<String>>,
}

impl tokio::io::AsyncRead for Checked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &r
            && buf.filled().len() == before
            && let Some(e) = self.failed.get()
        {
            return std::task::Poll::Ready(Err(std::io::Error::other(e.clone())));
        }
        r
    }
}

/// Append `root/rel` and everything under it, depth first, in name order (the same tree
/// makes the same archive).
fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    exclude: &[PathBuf],
) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let t = e.file_type()?;
        if t.is_socket() || exclude.contains(&name) {
            continue;
        }
        b.append_path_with_name(e.path(), &name)?;
        if t.is_dir() {
            append_tree(b, root, &name, exclude)?;
        }
    }
    Ok(())
}

/// An import under way: the stream to write the tar to, and its unpacking.
pub struct Import {
    pub stream: BoxWrite,
    task: JoinHandle<Result<u64, WitError>>,
    commit: tokio::sync::oneshot::Sender<Commit>,
}

/// How an import ends once its archive is unpacked.
pub enum Commit {
    /// Add these files, then move the volume into place.
    Keep(Vec<AddedFile>),
    /// Leave nothing (the transfer failed).
    Discard,
}

/// A small file a plugin adds to an imported volume (`volume-import.add-file`).
pub struct AddedFile {
    /// Relative to the volume's root, every part a plain name.
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub append: bool,
}

impl Import {
    /// Wait for the unpacking. `keep` (the tar was written whole: its transfer succeeded):
    /// move it into place; the archive's bytes. Otherwise nothing is kept, and the error is
    /// the unpacking's own when it failed.
    pub async fn finish(
        task: JoinHandle<Result<u64, WitError>>,
        commit: tokio::sync::oneshot::Sender<Commit>,
        how: Commit,
    ) -> Result<u64, WitError> {
        let _ = commit.send(how);
        task.await
            .map_err(|e| WitError::Internal(format!("the import task ended: {e}")))?
    }

    pub fn into_parts(
        self,
    ) -> (
        BoxWrite,
        JoinHandle<Result<u64, WitError>>,
        tokio::sync::oneshot::Sender<Commit>,
    ) {
        (self.stream, self.task, self.commit)
    }
}

/// Unpack a tar written to the returned stream into new directory `target` (absent, or
/// empty). It appears at `target` only when the archive ended well and the import is
/// committed ([`Import::finish`]); otherwise nothing is left.
pub fn untar_into(target: PathBuf) -> Result<Import, WitError> {
    let parent = target
        .parent()
        .ok_or_else(|| WitError::InvalidArgument(format!("{} has no parent", target.display())))?
        .to_path_buf();
    let name = target
        .file_name()
        .ok_or_else(|| WitError::InvalidArgument(format!("{} has no name", target.display())))?
        .to_string_lossy()
        .into_owned();
    let partial = parent.join(format!(
        ".{name}.coffer-import-{}",
        hex::encode(getrandom::u32().unwrap_or_default().to_be_bytes())
    ));
    std::fs::create_dir(&partial)
        .map_err(|e| WitError::Io(format!("creating {}: {e}", partial.display())))?;
    let (reader, writer) = tokio::io::duplex(PIPE);
    let (commit, committed) = tokio::sync::oneshot::channel::<Commit>();
    let bridge = SyncIoBridge::new(reader);
    let task = tokio::task::spawn_blocking(move || {
        let mut counted = Counted {
            inner: bridge,
            n: 0,
        };
        let failed = |e: std::io::Error| {
            let _ = std::fs::remove_dir_all(&partial);
            Err(WitError::Io(format!(
                "unpacking the exported snapshot into {}: {e}; nothing was left there",
                target.display()
            )))
        };
        if let Err(e) = unpack(&mut counted, &partial) {
            return failed(e);
        }
        match committed.blocking_recv() {
            Ok(Commit::Keep(files)) => {
                for f in &files {
                    if let Err(e) = add_file(&partial, f) {
                        return failed(std::io::Error::new(
                            e.kind(),
                            format!("adding {}: {e}", f.path.display()),
                        ));
                    }
                }
                // An empty target the user made may stand in the way; one with content
                // was refused before the import began.
                let _ = std::fs::remove_dir(&target);
                match std::fs::rename(&partial, &target) {
                    Ok(()) => Ok(counted.n),
                    Err(e) => failed(e),
                }
            }
            // The transfer failed: the tar unpacked, but it is not kept.
            Ok(Commit::Discard) => {
                let _ = std::fs::remove_dir_all(&partial);
                Ok(counted.n)
            }
            Err(_) => failed(std::io::Error::other(
                "the import was abandoned before it finished",
            )),
        }
    });
    Ok(Import {
        stream: Box::pin(writer),
        task,
        commit,
    })
}

fn unpack<R: Read>(r: &mut R, into: &Path) -> std::io::Result<()> {
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(false);
    // The stream is the plugin's to write (it is an output stream it holds): what a host
    // running as root makes of it must not hand anyone more than the files themselves.
    // No setuid or setgid bits, no device nodes.
    a.set_mask(0o6000);
    for entry in a.entries()? {
        let mut entry = entry?;
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular
            | T::GNUSparse
            | T::Directory
            | T::Symlink
            | T::Link
            | T::Fifo
            | T::Continuous => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "{}: entries of type {other:?} (devices and the like) are not restored",
                    entry.path()?.display()
                )));
            }
        }
        // The volume's root: its owner and mode (tar skips an entry for `.`).
        let path = entry.path()?.into_owned();
        if path
            .components()
            .all(|c| matches!(c, std::path::Component::CurDir))
        {
            if entry.header().entry_type() == T::Directory {
                use std::os::unix::fs::PermissionsExt;
                let h = entry.header();
                let mode = h.mode()? & 0o1777;
                std::fs::set_permissions(into, std::fs::Permissions::from_mode(mode))?;
                let (uid, gid) = (h.uid()? as u32, h.gid()? as u32);
                std::os::unix::fs::chown(into, Some(uid), Some(gid))?;
            }
            continue;
        }
        // `unpack_in` refuses entries that climb out of `into` (`..`, absolute paths,
        // through links).
        if !entry.unpack_in(into)? {
            return Err(std::io::Error::other(format!(
                "{}: the entry would land outside the volume",
                entry.path()?.display()
            )));
        }
    }
    // tar reads up to the first of the two zero blocks that end an archive, and stops as
    // quietly at an end of stream between entries: the second block must follow, and
    // nothing but zeros after it, or the archive was cut short.
    let mut rest = Vec::new();
    a.into_inner().read_to_end(&mut rest)?;
    if rest.len() < 512 || rest.iter().any(|b| *b != 0) {
        return Err(std::io::Error::other(
            "the archive does not end where a tar ends (cut short, or not one archive)",
        ));
    }
    Ok(())
}

/// Write `f` into the unpacked volume at `root`. The archive made the tree, and it is the
/// plugin's: every directory on the way must be a directory (a link there is refused, not
/// followed) and an appended file a regular file, so nothing outside the volume is
/// written. A new file belongs to its directory's owner, mode 0600.
fn add_file(root: &Path, f: &AddedFile) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut dir = root.to_path_buf();
    let mut parts: Vec<_> = f.path.components().collect();
    let name = parts
        .pop()
        .ok_or_else(|| std::io::Error::other("an empty path"))?;
    for c in parts {
        dir.push(c);
        if !std::fs::symlink_metadata(&dir)?.file_type().is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory in the volume (links are not followed)",
                dir.strip_prefix(root).unwrap_or(&dir).display()
            )));
        }
    }
    let path = dir.join(name);
    let mut open = std::fs::OpenOptions::new();
    open.custom_flags(libc::O_NOFOLLOW);
    let mut file = match std::fs::symlink_metadata(&path) {
        Ok(m) if f.append && m.file_type().is_file() => open.append(true).open(&path)?,
        Ok(_) if f.append => {
            return Err(std::io::Error::other(
                "the archive holds it, but not as a regular file",
            ));
        }
        Ok(_) => return Err(std::io::Error::other("the archive holds it already")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = open.write(true).create_new(true).mode(0o600).open(&path)?;
            let owner = std::fs::symlink_metadata(&dir)?;
            std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
            file
        }
        Err(e) => return Err(e),
    };
    file.write_all(&f.data)?;
    file.sync_all()
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_tree_goes_through_tar_and_back_whole_and_a_cut_stream_leaves_nothing() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(src.path().join("a/b/f"), vec![7u8; 300_000]).unwrap();
        std::fs::write(src.path().join("top"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(src.path().join("sock")).unwrap();
        let mut tar = Vec::new();
        std::fs::write(src.path().join("a/skip.pid"), "1").unwrap();
        tar_of(src.path().to_path_buf(), vec![PathBuf::from("a/skip.pid")])
            .read_to_end(&mut tar)
            .await
            .unwrap();

        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("restored");
        let (mut w, task, commit) = untar_into(target.clone()).unwrap().into_parts();
        w.write_all(&tar).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(
            Import::finish(task, commit, Commit::Keep(vec![]))
                .await
                .unwrap(),
            tar.len() as u64
        );
        assert_eq!(
            std::fs::read(target.join("a/b/f")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(
            std::fs::read_link(target.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(!target.join("sock").exists());
        assert!(
            !target.join("a/skip.pid").exists(),
            "an excluded path was kept"
        );
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o7777,
            0o750,
            "the volume's own mode was not restored"
        );

        // Cut short, even at an entry's end, or abandoned: no target, no partial directory.
        let cut = out.path().join("cut");
        let first_entry_end = 512 + 512; // `a/`'s header and the next header block
        for len in [tar.len() / 2, first_entry_end, tar.len()] {
            let (mut w, task, commit) = untar_into(cut.clone()).unwrap().into_parts();
            w.write_all(&tar[..len]).await.unwrap();
            drop(w);
            if len == tar.len() {
                drop(commit);
                assert!(task.await.unwrap().is_err(), "an abandoned import was kept");
            } else {
                assert!(
                    Import::finish(task, commit, Commit::Keep(vec![]))
                        .await
                        .is_err(),
                    "{len} bytes unpacked"
                );
            }
            assert!(!cut.exists());
        }
        let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// A tar of one entry, written by hand as a hostile plugin could write its import
    /// stream: the raw name bytes bypass the checks `tar` makes when building.
    fn one_entry(name: &str, kind: tar::EntryType, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    async fn import(target: &Path, tar: &[u8]) -> Result<u64, WitError> {
        import_adding(target, tar, vec![]).await
    }

    async fn import_adding(
        target: &Path,
        tar: &[u8],
        files: Vec<AddedFile>,
    ) -> Result<u64, WitError> {
        let (mut w, task, commit) = untar_into(target.to_path_buf()).unwrap().into_parts();
        w.write_all(tar).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        Import::finish(task, commit, Commit::Keep(files)).await
    }

    fn added(path: &str, data: &[u8], append: bool) -> AddedFile {
        AddedFile {
            path: path.into(),
            data: data.to_vec(),
            append,
        }
    }

    #[tokio::test]
    async fn added_files_land_in_the_volume_and_never_through_a_link() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let out = tempfile::tempdir().unwrap();
        let victim = out.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        // An archive a plugin wrote: a directory of another owner, links out of the volume.
        let mut b = tar::Builder::new(Vec::new());
        let mut entry = |name: &str, kind: tar::EntryType, link: Option<&Path>, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(if kind == tar::EntryType::Directory {
                0o700
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_uid(1234);
            h.set_gid(1235);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            b.append_data(&mut h, name, data).unwrap();
        };
        entry("conf", tar::EntryType::Directory, None, b"");
        entry("conf/auto.conf", tar::EntryType::Regular, None, b"a = 1\n");
        entry("label", tar::EntryType::Symlink, Some(&victim), b"");
        entry("out", tar::EntryType::Symlink, Some(out.path()), b"");
        let tar = b.into_inner().unwrap();

        let vol = out.path().join("vol");
        import_adding(
            &vol,
            &tar,
            vec![
                added("conf/backup_label", b"START WAL LOCATION", false),
                added("conf/auto.conf", b"b = 2\n", true),
            ],
        )
        .await
        .unwrap();
        let label = std::fs::metadata(vol.join("conf/backup_label")).unwrap();
        assert_eq!(label.permissions().mode() & 0o7777, 0o600);
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                (label.uid(), label.gid()),
                (1234, 1235),
                "not the directory's owner"
            );
        }
        assert_eq!(
            std::fs::read_to_string(vol.join("conf/auto.conf")).unwrap(),
            "a = 1\nb = 2\n"
        );

        for (what, file) in [
            ("appending through a link", added("label", b"pwned", true)),
            (
                "a new file through a linked directory",
                added("out/victim2", b"pwned", false),
            ),
            (
                "replacing a file of the archive",
                added("conf/auto.conf", b"x", false),
            ),
        ] {
            let t = out.path().join("refused");
            let e = import_adding(&t, &tar, vec![file]).await;
            assert!(e.is_err(), "{what} was allowed");
            assert!(!t.exists(), "{what}: something was left at the target");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!out.path().join("victim2").exists());
    }

    #[tokio::test]
    async fn a_hostile_import_gets_no_setuid_no_device_and_no_path_outside() {
        use std::os::unix::fs::PermissionsExt;
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("vol");
        let suid = one_entry("tool", tar::EntryType::Regular, 0o4755, b"#!/bin/sh\n");
        import(&target, &suid).await.unwrap();
        let mode = std::fs::metadata(target.join("tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "a setuid bit was restored");

        for (what, tar) in [
            (
                "a device",
                one_entry("mem", tar::EntryType::Char, 0o666, b""),
            ),
            (
                "a path outside",
                one_entry("../escape", tar::EntryType::Regular, 0o644, b"x"),
            ),
        ] {
            let t = out.path().join("refused");
            assert!(import(&t, &tar).await.is_err(), "{what} was restored");
            assert!(!t.exists(), "{what}: something was left at the target");
        }
        assert!(!out.path().join("escape").exists());
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["vol"], "partial directories were left");
    }
}
