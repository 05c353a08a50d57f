//! A Profile made concrete: the object store behind it and how it compresses.

use crate::model::{Profile, ProfileType};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
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
    pub zstd_level: Option<i32>,
}

impl Location {
    pub fn from_profile(p: &Profile) -> Result<Location> {
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
        match p.spec.kind {
            ProfileType::File => {
                let dir = p.spec.path.clone().with_context(|| {
                    format!("Profile {name}: spec.path is required for type file")
                })?;
                if !dir.is_absolute() {
                    bail!(
                        "Profile {name}: spec.path {} must be absolute",
                        dir.display()
                    );
                }
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("Profile {name}: creating {}", dir.display()))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("Profile {name}: opening {}", dir.display()))?;
                Ok(Location {
                    profile: name.to_string(),
                    store: Arc::new(fs),
                    local_root: Some(dir),
                    zstd_level,
                })
            }
        }
    }

    /// Remove everything under `prefix` (a failed backup's partial objects, a deleted
    /// restore point). Returns how many objects were removed.
    pub async fn remove_prefix(&self, prefix: &str) -> Result<usize> {
        let root = Path::from(prefix);
        let mut listing = self.store.list(Some(&root));
        let mut paths = Vec::new();
        while let Some(item) = listing.next().await {
            paths.push(item.with_context(|| format!("listing {prefix}"))?.location);
        }
        for p in &paths {
            match self.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e).with_context(|| format!("deleting {p}")),
            }
        }
        if let Some(dir) = &self.local_root {
            // Staging files of uploads cut short by a crash are not listed; the directory
            // of the prefix is ours alone, so remove it whole.
            let d = dir.join(prefix);
            if d.starts_with(dir) && d.exists() {
                std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
        Ok(paths.len())
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("checking {key}")),
        }
    }
}
