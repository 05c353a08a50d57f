//! The `location` interface: an object-store prefix bound to one action. The host does the
//! bulk work ([`pipeline`]): stream -> zstd -> sha256 -> multipart upload, and back.

pub mod backend;
pub mod crypt;
mod grant;
mod keys;
pub mod pipeline;
mod s3api;
mod store;
mod wit;

pub use grant::LocationGrant;
pub use keys::{MANIFEST_NAME, check_key, logical_key, stored_key};
pub use wit::{StoreHandle, TransferHandle};

use crate::model::ObjectRecord;
use coffer_manifest::LocationAccess;
use object_store::ObjectStore;
use object_store::path::Path;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The locations bound to an action, by the logical name a plugin opens.
#[derive(Default)]
pub struct BoundLocations(pub BTreeMap<String, Arc<LocationBinding>>);

/// One call's location capability: its grant and the action's locations.
pub struct Location {
    grant: LocationGrant,
    bound: Arc<BoundLocations>,
}

impl crate::cap::Capability for Location {
    fn build(grants: &crate::cap::Grants, backends: &crate::cap::Backends) -> Location {
        Location {
            grant: LocationGrant::new(grants),
            bound: backends.get::<Arc<BoundLocations>>().unwrap_or_default(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> crate::cap::CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        crate::wit::coffer::blueprint::location::add_to_linker::<T, crate::cap::HasCap<Location>>(
            linker, get,
        )
    }
}

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
    /// Client-side encryption of what this action writes, and the key to read with.
    pub encryption: Option<crypt::Encryption>,
    /// Objects of the restore point being read, by key: what reads are verified against.
    pub expected: BTreeMap<String, ObjectRecord>,
    /// The version of each object (by stored key) the restore verified before the plugin
    /// ran: its reads get exactly those.
    pub verified: std::sync::Mutex<BTreeMap<String, pipeline::ObjectVersion>>,
    /// Uploads that may run at once for this action ([`MAX_UPLOADS`]); more wait.
    pub uploads: Arc<tokio::sync::Semaphore>,
}

/// Uploads one action runs at once: each holds up to two 8 MiB parts in memory.
pub const MAX_UPLOADS: usize = 4;

/// The upload slots of a new binding.
pub fn upload_slots() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS))
}

impl LocationBinding {
    /// The object-store path of a stored key under this binding's prefix.
    pub fn path(&self, stored: &str) -> Result<Path, String> {
        Path::parse(format!("{}/{stored}", self.prefix)).map_err(|e| format!("key {stored:?}: {e}"))
    }

    /// The version of `stored` the restore verified, if it did.
    pub fn verified_version(&self, stored: &str) -> Option<pipeline::ObjectVersion> {
        self.verified.lock().unwrap().get(stored).cloned()
    }
}

/// An object store error in one readable line. S3 errors carry the server's XML body,
/// repeated at every level of the error chain; keep the request, the code and the message.
pub fn store_error(e: &object_store::Error) -> String {
    let text = e.to_string();
    let Some(at) = text.find("<?xml") else {
        return text;
    };
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let head = text[..at].trim_end_matches([' ', ':']);
    match (field("Code"), field("Message")) {
        (Some(c), Some(m)) => format!("{head}: {c}: {m}"),
        (Some(c), None) => format!("{head}: {c}"),
        _ => head.to_string(),
    }
}
