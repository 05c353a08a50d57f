//! The host's bindings of the `coffer:blueprint` WIT packages (wit/, and the 0.1.0 it still
//! runs in wit/deps/blueprint-0.1.0/): the plugin ABI as Rust types and traits. A leaf: it imports nothing else of the host, so every capability can
//! depend on it and the engine can depend on the capabilities without a cycle. Resources
//! (`process`, `store`, `transfer`, `secret`) are opaque here; each capability keeps its own
//! handle type in the resource table and converts with [`retype`].

use wasmtime::component::Resource;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "linked",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
    },
});

pub use self::coffer::blueprint0_1_0::types::{Error as WitError, RemoteError};
pub use exports::coffer::blueprint0_1_0::plugin as wit_plugin;

/// The interfaces a plugin imports, at the version the host implements them: 0.2.0's
/// `runtime` and `snapshot`, and the interfaces 0.2.0 left at 0.1.0.
pub mod abi {
    pub use super::coffer::blueprint0_1_0::{exec, kube, location, secrets, signed_http, types};
    pub use super::coffer::blueprint0_2_0::{
        location_reader, location_writer, net, runtime, snapshot,
    };

    /// The 0.1.0 interfaces 0.2.0 replaced, still linked so a plugin built for 0.1.0 runs.
    pub mod v0_1 {
        pub use crate::wit::coffer::blueprint0_1_0::{runtime, snapshot};
    }
}

/// The same table entry seen as another type: a WIT resource as the capability's handle
/// type, or back. Ownership (own or borrow) is kept; a wrong type is caught by the table,
/// which checks the entry's real type on every access.
pub fn retype<T: 'static, U: 'static>(r: &Resource<T>) -> Resource<U> {
    if r.owned() {
        Resource::new_own(r.rep())
    } else {
        Resource::new_borrow(r.rep())
    }
}
