//! The host's bindings of the `coffer:blueprint` WIT package (wit/): the plugin ABI as Rust
//! types and traits. A leaf: it imports nothing else of the host, so every capability can
//! depend on it and the engine can depend on the capabilities without a cycle. Resources
//! (`process`, `store`, `transfer`, `secret`) are opaque here; each capability keeps its own
//! handle type in the resource table and converts with [`retype`].

use wasmtime::component::Resource;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "blueprint",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
    },
});

pub use self::coffer::blueprint::types::{Error as WitError, RemoteError};
pub use exports::coffer::blueprint::plugin as wit_plugin;

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
