//! Capabilities the host lends plugins. Each is one folder: its per-call state (its slice of
//! the grants, its backend, its handles), its WIT host functions on a [`CapView`] of that
//! state, its own linking, its grant check with a table of tests, and its backend trait with
//! the implementations of each mode (local, cluster, scripted for the test harness).
//!
//! A call is allowed only when the plugin's manifest declares it AND the Blueprint grants it
//! ([`grant`]), and every call is recorded on the action's audit trail ([`scope`]).

pub mod exec;
pub mod grant;
pub mod kube;
pub mod location;
pub mod net;
pub mod runtime;
pub mod scope;
pub mod secrets;
mod set;
pub mod signed_http;
pub mod snapshot;

pub use grant::{Grant, Grants};
pub use scope::{ActionScope, Actor, AuditHook, Progress, Records};
pub use set::{Backends, CapView, Capability, HasCap, HasCapabilities, Lending, Parts};

use crate::wit::{RemoteError, WitError};
use set::capability_set;

capability_set! {
    runtime: runtime::Runtime,
    secrets: secrets::Secrets,
    exec: exec::Exec,
    location: location::Locations,
    snapshot: snapshot::Snapshot,
    kube: kube::Kube,
    signed_http: signed_http::SignedHttp,
    net: net::Net,
}

/// One line for an error of the WIT `error` type.
pub fn error_text(e: &WitError) -> String {
    match e {
        WitError::Denied(s) => format!("denied: {s}"),
        WitError::NotFound(s) => format!("not found: {s}"),
        WitError::InvalidArgument(s) => format!("invalid argument: {s}"),
        WitError::Conflict(s) => format!("conflict: {s}"),
        WitError::Timeout(s) => format!("timeout: {s}"),
        WitError::Cancelled => "cancelled".to_string(),
        WitError::Unavailable(s) => format!("unavailable: {s}"),
        WitError::Limit(s) => format!("limit: {s}"),
        WitError::Remote(RemoteError {
            system,
            code,
            message,
            ..
        }) => match code {
            Some(c) if !message.contains(c.as_str()) => format!("{system} ({c}): {message}"),
            _ => format!("{system}: {message}"),
        },
        WitError::Io(s) => format!("io: {s}"),
        WitError::Internal(s) => format!("internal: {s}"),
    }
}

/// `wasmtime::Result<Result<T, WitError>>`: a host function's result that does not trap.
pub type HostResult<T> = wasmtime::Result<Result<T, WitError>>;
