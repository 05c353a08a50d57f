//! Host bindings of the `coffer:blueprint` WIT package.

use super::HostState;
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "blueprint",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "coffer:blueprint/exec.process": crate::cap::exec::ProcessHandle,
        "coffer:blueprint/location.store": crate::cap::location::StoreHandle,
        "coffer:blueprint/location.transfer": crate::cap::location::TransferHandle,
        "coffer:blueprint/secrets.secret": crate::cap::secrets::SecretHandle,
    },
});

pub use self::coffer::blueprint::types::{Error as WitError, RemoteError};
pub use exports::coffer::blueprint::plugin as wit_plugin;

/// Link every coffer interface. (Per interface, not the world's `add_to_linker`, because
/// wasi:io comes from wasmtime-wasi.)
pub fn add_capabilities(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use self::coffer::blueprint as cb;
    cb::types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::runtime::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::secrets::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::exec::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::location::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::snapshot::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::kube::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    cb::signed_http::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

impl self::coffer::blueprint::types::Host for HostState {}
