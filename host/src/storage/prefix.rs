//! A prefix of a location: where one restore point's objects live, in which store, and how
//! what is written there is encrypted.

use super::crypt::Encryption;
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct Prefix {
    /// The Profile behind the store.
    pub profile: String,
    pub store: Arc<dyn ObjectStore>,
    /// The prefix itself (no trailing `/`).
    pub root: String,
    /// Client-side encryption of what is written, and the key to read with.
    pub encryption: Option<Encryption>,
    /// Pre-signed part uploads, where the store has them: a mover writes through these.
    pub parts: Option<Arc<dyn super::presign::PartSigner>>,
}

impl Prefix {
    /// The object-store path of a stored key under this prefix.
    pub fn path(&self, stored: &str) -> Result<Path, String> {
        Path::parse(format!("{}/{stored}", self.root)).map_err(|e| format!("key {stored:?}: {e}"))
    }
}
