//! Storage: where backups live and the format they are in, below any plugin. A Profile made
//! concrete ([`Location`]: the object store, its compression, encryption and Object Lock),
//! the data path ([`pipeline`]: stream -> zstd -> age -> sha256 -> multipart upload, and
//! back, verified), object keys ([`keys`]), the signed restore point manifest
//! ([`manifest`]), and the services the `coffer location` commands offer ([`ops`]).
//! The `location` capability is WIT glue over this layer; the action engine and the CLI
//! use it directly.

pub mod crypt;
pub mod keys;
mod location;
pub mod manifest;
pub mod open;
pub mod ops;
pub mod pipeline;
mod prefix;
pub mod presign;
mod s3api;
pub mod streams;

pub use keys::MANIFEST_NAME;
pub use location::{DEFAULT_ZSTD_LEVEL, Location, check_removable};
pub use prefix::Prefix;

/// An object store error in one readable line, with its likely cause. S3 errors carry the
/// server's XML body, repeated at every level of the error chain; keep the request, the code
/// and the message.
pub fn store_error(e: &object_store::Error) -> String {
    let line = one_line(&e.to_string());
    match likely_cause(e, &line) {
        Some(cause) => format!("{line} (likely cause: {cause})"),
        None => line,
    }
}

fn one_line(text: &str) -> String {
    let Some(at) = text.find("<?xml") else {
        return text.to_string();
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

/// What a user most likely has to fix, read from the error (the same words across S3, GCS
/// and Azure where the servers agree).
fn likely_cause(e: &object_store::Error, text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&[
        "requesttimetooskewed",
        "clock skew",
        "request time too skewed",
    ]) {
        return Some("this machine's clock is off; sync it (chrony, systemd-timesyncd)");
    }
    if has(&["builder error", "url scheme is not allowed", "relative url"]) {
        return Some(
            "the endpoint's scheme: use https://, or http:// in spec.endpoint for an emulator or a private network",
        );
    }
    if has(&["certificate", "invalid peer", "tls handshake", "ssl"]) {
        return Some(
            "TLS failed: the endpoint's certificate is not trusted, or it speaks plain HTTP (then write http:// in spec.endpoint)",
        );
    }
    if has(&[
        "nosuchbucket",
        "containernotfound",
        "bucket does not exist",
        "the specified bucket",
    ]) {
        return Some(
            "the bucket (container) does not exist: create it, or fix spec.bucket / spec.container",
        );
    }
    if has(&[
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "authenticationfailed",
        "accessdenied",
        "access denied",
        "forbidden",
        "unauthorized",
        "invalid_grant",
    ]) || matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) {
        return Some(
            "the credentials were refused or lack a permission: check spec.credentials and what they are allowed (`coffer profile validate` probes each)",
        );
    }
    if has(&[
        "connection refused",
        "dns error",
        "tcp connect",
        "error sending request",
        "timed out",
        "connect error",
    ]) {
        return Some(
            "the endpoint cannot be reached: is the server up, and are spec.endpoint and the network right?",
        );
    }
    None
}
