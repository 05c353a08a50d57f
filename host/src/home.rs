//! The state directory: catalog, default location, compile cache.

use anyhow::{Context, Result};
use std::path::PathBuf;

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
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the state directory {}", root.display()))?;
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
}
