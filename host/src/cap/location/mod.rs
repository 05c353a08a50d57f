//! The `location` interface: an object-store prefix bound to one action. The host does the
//! bulk work ([`pipeline`]): stream -> zstd -> sha256 -> multipart upload, and back.

pub mod backend;
mod keys;
pub mod pipeline;
mod wit;

pub use keys::{MANIFEST_NAME, check_key, stored_key};
pub use wit::{StoreHandle, TransferHandle};

use crate::model::ObjectRecord;
use coffer_manifest::LocationAccess;
use object_store::ObjectStore;
use object_store::path::Path;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A location as one action sees it.
pub struct LocationBinding {
    /// The Profile behind it.
    pub profile: String,
    pub store: Arc<dyn ObjectStore>,
    /// Everything this action touches lives under this prefix (no trailing `/`).
    pub prefix: String,
    /// What this action may do here (a backup writes, a restore reads, a delete deletes).
    pub access: Vec<LocationAccess>,
    /// zstd level; `None` stores objects uncompressed whatever the plugin asks.
    pub zstd_level: Option<i32>,
    /// Objects of the restore point being read, by key: what reads are verified against.
    pub expected: BTreeMap<String, ObjectRecord>,
}

impl LocationBinding {
    /// The object-store path of a stored key under this binding's prefix.
    pub fn path(&self, stored: &str) -> Result<Path, String> {
        Path::parse(format!("{}/{stored}", self.prefix)).map_err(|e| format!("key {stored:?}: {e}"))
    }
}
