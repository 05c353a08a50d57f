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
mod open;
pub mod ops;
pub mod pipeline;
mod prefix;
pub mod presign;
mod s3api;
pub mod streams;

pub use keys::MANIFEST_NAME;
pub use location::{DEFAULT_ZSTD_LEVEL, Location, check_removable};
pub use prefix::Prefix;

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
