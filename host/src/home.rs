//! The state directory: catalog, default location, compile cache, keys. Private to the user
//! coffer runs as: made 0700 (files 0600), and refused when others could write to it (they
//! could swap the catalog, the compiled plugins or the keys).

use anyhow::{Context, Result, bail};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `COFFER_HOME`, else `$XDG_DATA_HOME/coffer`, else `~/.local/share/coffer`.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Home> {
        let root = explicit
            .or_else(|| std::env::var_os("COFFER_HOME").map(PathBuf::from))
            .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("coffer")))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/coffer"))
            })
            .context("no state directory: set COFFER_HOME")?;
        create_private_dir(&root)
            .with_context(|| format!("creating the state directory {}", root.display()))?;
        check_private(&root)?;
        // Readable by others is not refused, but tightened: the default location's dumps
        // live below it.
        let mode = std::fs::metadata(&root)?.mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private (chmod 700)", root.display()))?;
            tracing::info!(dir = %root.display(), "made the state directory private (mode 700)");
        }
        Ok(Home { root })
    }

    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.db")
    }
    /// Compiled plugins; `COFFER_CACHE_DIR` shares one cache between homes.
    pub fn cache_dir(&self) -> PathBuf {
        std::env::var_os("COFFER_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("cache").join("plugins"))
    }
    /// Where the built-in `default` Profile stores backups.
    pub fn default_location(&self) -> PathBuf {
        self.root.join("locations").join("default")
    }
    /// The key restore point manifests are signed with (local mode).
    pub fn manifest_key(&self) -> PathBuf {
        self.root.join("keys").join("manifest.key")
    }
}

/// `mkdir -p` with mode 0700 for what it creates.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A directory coffer trusts must not be writable by other users, and must be its own.
pub fn check_private(dir: &Path) -> Result<()> {
    let m = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    // SAFETY: a plain syscall.
    let me = unsafe { libc::geteuid() };
    if m.mode() & 0o022 != 0 {
        bail!(
            "{} is writable by other users (mode {:o}); coffer keeps its catalog, keys and compiled plugins there. Fix it with `chmod go-w {}` (or `chmod 700`)",
            dir.display(),
            m.mode() & 0o777,
            dir.display()
        );
    }
    if m.uid() != me && me != 0 {
        bail!(
            "{} belongs to another user (uid {}); use a state directory of your own (COFFER_HOME)",
            dir.display(),
            m.uid()
        );
    }
    Ok(())
}

/// Write a file readable by this user only (0600), whole or not at all, its directory made
/// 0700 if missing.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    std::io::Write::write_all(&mut tmp.as_file(), bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_home_is_private_and_a_shared_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/b");
        Home::resolve(Some(root.clone())).unwrap();
        assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Home::resolve(Some(root.clone())).err().unwrap().to_string();
        assert!(e.contains("writable by other users"), "{e}");
        let f = root.join("k");
        write_private(&f, b"x").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
    }
}
