//! A Profile made concrete: the object store behind it, how it compresses and encrypts,
//! and the housekeeping every backend needs (removing a prefix, aborting open uploads).

use super::crypt::Encryption;
use super::open;
use super::s3api::S3Api;
use crate::credentials::Credentials;
use crate::model::{ObjectLockSpec, Profile};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

pub struct Location {
    pub profile: String,
    pub store: Arc<dyn ObjectStore>,
    /// For file profiles: the directory, so leftovers of interrupted uploads can be removed.
    local_root: Option<PathBuf>,
    s3: Option<S3Api>,
    /// Pre-signed part uploads, where the store has them (movers write through these).
    pub parts: Option<Arc<dyn super::presign::PartSigner>>,
    /// The Profile's path inside the bucket, if any (raw S3 calls need the full key).
    bucket_prefix: String,
    pub zstd_level: Option<i32>,
    pub encryption: Option<Encryption>,
    /// Object Lock retention for what a backup writes.
    pub object_lock: Option<ObjectLockSpec>,
}

impl Location {
    pub fn from_profile(p: &Profile, credentials: &Credentials) -> Result<Location> {
        let name = p.name();
        let zstd_level = match p.spec.compression.as_deref() {
            None | Some("zstd") => Some(p.spec.compression_level.unwrap_or(DEFAULT_ZSTD_LEVEL)),
            Some("none") => None,
            Some(other) => {
                bail!("Profile {name}: spec.compression {other:?} is not one of zstd, none")
            }
        };
        if let Some(l) = zstd_level
            && !(1..=19).contains(&l)
        {
            bail!("Profile {name}: spec.compressionLevel {l} is not between 1 and 19");
        }
        let encryption =
            Encryption::from_spec(name, p.spec.kind, p.spec.encryption.as_ref(), credentials)?;
        let opened = open::open(p, credentials)?;
        Ok(Location {
            profile: name.to_string(),
            store: opened.store,
            local_root: opened.local_root,
            s3: opened.s3,
            parts: opened.parts,
            bucket_prefix: p
                .spec
                .prefix
                .as_deref()
                .map(|s| s.trim_matches('/'))
                .filter(|s| !s.is_empty())
                .map(|s| format!("{s}/"))
                .unwrap_or_default(),
            zstd_level,
            encryption,
            object_lock: p.spec.object_lock.clone(),
        })
    }

    /// Before a backup writes anything: a Profile that asks for Object Lock must be on a
    /// bucket that enforces it, or the backup would be silently mutable.
    pub async fn check_object_lock(&self) -> Result<()> {
        if self.object_lock.is_none() {
            return Ok(());
        }
        let Some(s3) = &self.s3 else {
            bail!("Profile {}: spec.objectLock needs type s3", self.profile);
        };
        let enabled = s3
            .object_lock_enabled()
            .await
            .map_err(|e| anyhow::anyhow!("Profile {}: checking Object Lock: {e}", self.profile))?;
        if !enabled {
            bail!(
                "Profile {} asks for Object Lock (spec.objectLock), but {} does not have Object Lock enabled (or the server does not support it); nothing was written. Create the bucket with Object Lock enabled, or remove spec.objectLock",
                self.profile,
                s3.describe()
            );
        }
        Ok(())
    }

    /// Put Object Lock retention on each key (relative to the Profile), counted from now.
    /// Set explicitly on every object, rather than by headers at upload, because not every
    /// server honours those headers on multipart uploads.
    pub async fn lock(&self, keys: &[String]) -> Result<()> {
        let (Some(lock), Some(s3)) = (&self.object_lock, &self.s3) else {
            return Ok(());
        };
        let until = time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(lock.days));
        let until = until.replace_nanosecond(0).unwrap_or(until);
        let until = until.format(&time::format_description::well_known::Rfc3339)?;
        for k in keys {
            s3.put_retention(
                &format!("{}{k}", self.bucket_prefix),
                lock.mode.header_value(),
                &until,
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "Profile {}: setting Object Lock retention on {k}: {e}",
                    self.profile
                )
            })?;
        }
        Ok(())
    }

    /// Remove everything under `prefix` (a failed backup's partial objects, a deleted
    /// restore point), and abort multipart uploads still open there. Returns how many
    /// objects were removed.
    pub async fn remove_prefix(&self, prefix: &str) -> Result<usize> {
        check_removable(prefix)?;
        let root = Path::from(prefix);
        let mut listing = self.store.list(Some(&root));
        let mut paths = Vec::new();
        while let Some(item) = listing.next().await {
            match item {
                Ok(m) => paths.push(m.location),
                Err(e) => bail!("listing {prefix}: {}", super::store_error(&e)),
            }
        }
        for p in &paths {
            match self.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => bail!("deleting {p}: {}", super::store_error(&e)),
            }
        }
        self.abort_open_uploads(prefix).await?;
        let mut staged = 0;
        if let Some(dir) = &self.local_root {
            // Staging files of uploads cut short by a crash are not listed; the directory
            // of the prefix is ours alone, so remove it whole — once its real path is known
            // to be inside the Profile's directory (no `..`, no symlink out).
            let d = dir.join(prefix);
            if d.exists() {
                let real = d
                    .canonicalize()
                    .with_context(|| format!("resolving {}", d.display()))?;
                let root = dir
                    .canonicalize()
                    .with_context(|| format!("resolving {}", dir.display()))?;
                if !real.starts_with(&root) || real == root {
                    bail!(
                        "{} resolves to {}, outside the Profile's directory {}; not removing it",
                        d.display(),
                        real.display(),
                        root.display()
                    );
                }
                // What is left after the listed objects went: staging files, counted so
                // the caller's "N partial object(s) were removed" is true for them too.
                staged = count_files(&real);
                std::fs::remove_dir_all(&real)
                    .with_context(|| format!("removing {}", real.display()))?;
            }
        }
        Ok(paths.len() + staged)
    }
}

/// Regular files under `dir`, at any depth (symlinks are not followed).
fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// Whether `prefix` is one coffer removes whole: a restore point's own
/// (`restorepoints/…/<name>`, at least three plain segments), never the whole Profile, never
/// a path with `.`/`..`/empty segments.
pub fn check_removable(prefix: &str) -> Result<()> {
    let segments: Vec<&str> = prefix.split('/').collect();
    let plain = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && !s.contains(['\\', '\0'])
            && !s.chars().any(char::is_control)
    };
    if segments.first() != Some(&"restorepoints")
        || segments.len() < 3
        || !segments.iter().all(plain)
    {
        bail!(
            "refusing to remove {prefix:?}: only a restore point's own prefix (restorepoints/<workload>/<name>) is ever removed whole"
        );
    }
    Ok(())
}

impl Location {
    /// Abort multipart uploads left open under `prefix` (an upload whose abort could not
    /// reach the server). Servers that cannot list uploads are skipped with a warning.
    pub async fn abort_open_uploads(&self, prefix: &str) -> Result<usize> {
        let Some(s3) = &self.s3 else { return Ok(0) };
        let full = format!("{}{prefix}/", self.bucket_prefix);
        let uploads = match s3.open_uploads(&full).await {
            Ok(u) => u,
            Err(e) if e.contains("NotImplemented") || e.contains("501") => {
                tracing::warn!(profile = %self.profile, "the server cannot list multipart uploads; open uploads under {full} (if any) are left to the bucket's lifecycle rules");
                return Ok(0);
            }
            Err(e) => bail!("listing open multipart uploads under {full}: {e}"),
        };
        for u in &uploads {
            s3.abort_upload(u)
                .await
                .map_err(|e| anyhow::anyhow!("aborting the upload of {}: {e}", u.key))?;
            tracing::info!(key = %u.key, "aborted an open multipart upload");
        }
        Ok(uploads.len())
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("checking {key}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, ProfileSpec};

    #[tokio::test]
    async fn a_removed_prefix_counts_the_staging_files_of_cut_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::new(
            Kind::Profile,
            "local",
            ProfileSpec::file(dir.path().to_path_buf()),
        );
        let loc = Location::from_profile(&profile, &Credentials::local()).unwrap();
        let prefix = "restorepoints/ns/rp-1";
        let d = dir.path().join(prefix);
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::write(d.join("data/a"), b"a").unwrap();
        // What object_store's local store writes before its rename: not listed.
        std::fs::write(d.join("data/b#1"), b"half").unwrap();
        assert_eq!(loc.remove_prefix(prefix).await.unwrap(), 2);
        assert!(!d.exists());
        assert!(dir.path().join("restorepoints/ns").exists());
    }
}
