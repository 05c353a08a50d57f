//! The `location` interface: an object-store prefix bound to one action. The host does the
//! bulk work through the storage layer ([`crate::storage::pipeline`]): stream -> zstd ->
//! age -> sha256 -> multipart upload, and back, verified. This folder is the WIT glue: the
//! grant, the action's own limits on what it may do where, key confinement, transfers.

mod grant;
mod keys;
mod reader;
mod wit;
mod writer;

pub use grant::LocationGrant;
pub use keys::check_key;
pub use wit::{StoreHandle, TransferHandle};

use crate::cap::{Backends, CapView, Capability, Grants, HasCap};
use crate::model::ObjectRecord;
use crate::storage::Prefix;
use crate::storage::pipeline::ObjectVersion;
use coffer_manifest::LocationAccess;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::Linker;

/// A location as one action sees it.
pub struct BoundLocation {
    /// Everything this action touches lives under this prefix.
    pub prefix: Prefix,
    /// What this action may do here (a backup writes, a restore reads, a delete deletes).
    pub access: Vec<LocationAccess>,
    /// zstd level; `None` stores objects uncompressed whatever the plugin asks.
    pub zstd_level: Option<i32>,
    /// Objects of the restore point being read, by key: what reads are verified against.
    pub expected: BTreeMap<String, ObjectRecord>,
    /// The version of each object (by stored key) the restore verified before the plugin
    /// ran: its reads get exactly those.
    pub verified: Mutex<BTreeMap<String, ObjectVersion>>,
    /// Uploads that may run at once for this action ([`MAX_UPLOADS`]); more wait.
    pub uploads: Arc<tokio::sync::Semaphore>,
}

/// Uploads one action runs at once: each holds up to two 8 MiB parts in memory.
pub const MAX_UPLOADS: usize = 4;

impl BoundLocation {
    pub fn new(
        prefix: Prefix,
        access: Vec<LocationAccess>,
        zstd_level: Option<i32>,
        expected: BTreeMap<String, ObjectRecord>,
    ) -> BoundLocation {
        BoundLocation {
            prefix,
            access,
            zstd_level,
            expected,
            verified: Mutex::default(),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
        }
    }

    /// The version of `stored` the restore verified, if it did.
    pub fn verified_version(&self, stored: &str) -> Option<ObjectVersion> {
        self.verified.lock().unwrap().get(stored).cloned()
    }
}

/// The locations bound to an action, by the logical name a plugin opens.
#[derive(Default)]
pub struct BoundLocations(pub BTreeMap<String, Arc<BoundLocation>>);

/// One call's locations: its grant and the action's bound locations.
pub struct Locations {
    grant: LocationGrant,
    bound: Arc<BoundLocations>,
    /// The mode's exec backend: a stream of a process it defers may be made by a mover.
    exec: Option<Arc<dyn crate::cap::exec::ExecBackend>>,
}

impl Capability for Locations {
    fn build(grants: &Grants, backends: &Backends) -> Locations {
        Locations {
            grant: LocationGrant::new(grants),
            bound: backends.get::<Arc<BoundLocations>>().unwrap_or_default(),
            exec: backends.get::<Arc<dyn crate::cap::exec::ExecBackend>>(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        crate::wit::abi::location::add_to_linker::<T, HasCap<Locations>>(linker, get)?;
        crate::wit::abi::location_writer::add_to_linker::<T, HasCap<Locations>>(linker, get)?;
        crate::wit::abi::location_reader::add_to_linker::<T, HasCap<Locations>>(linker, get)
    }
}
