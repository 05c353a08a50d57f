//! TCP to the peers the Blueprint grants (`spec.grants.net`; the manifest declares what the
//! plugin may ask for, e.g. `"net": ["*:*"]` for a protocol plugin that goes wherever the
//! user points it). Names are looked up by the host, which answers only for granted ones;
//! the socket is then an ordinary [`std::net::TcpStream`] (wasi:sockets), which the host
//! lets connect only to granted peers.
//!
//! ```ignore
//! use std::io::Write;
//! let mut s = coffer_plugin_sdk::net::connect("kafka-0.kafka.svc:9092")?;
//! s.write_all(b"...")?;
//! ```
//!
//! Bytes read this way pass through the plugin's memory: read in bounded pieces.

use crate::bindings::coffer::blueprint0_2_0::net as wit;
use crate::types::Error;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// The addresses of `host`, when the Blueprint grants it.
pub fn resolve(host: &str) -> Result<Vec<IpAddr>, Error> {
    let found = wit::resolve(host)?;
    Ok(found.iter().filter_map(|a| a.parse().ok()).collect())
}

/// Connect to `host:port` (an address, `[v6]:port`, or a name the host resolves), trying
/// each address in turn; the error of the last names what failed.
pub fn connect(target: &str) -> Result<TcpStream, Error> {
    connect_timeout(target, Duration::from_secs(30))
}

/// [`connect`] giving up on each address after `timeout`.
pub fn connect_timeout(target: &str, timeout: Duration) -> Result<TcpStream, Error> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return TcpStream::connect_timeout(&addr, timeout).map_err(|e| io_error(target, e));
    }
    let (host, port) = target
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| Error::InvalidArgument(format!("{target:?}: write host:port")))?;
    let mut last = Error::NotFound(format!("{host} has no address"));
    for ip in resolve(host)? {
        match TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = io_error(target, e),
        }
    }
    Err(last)
}

fn io_error(target: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::Denied(format!(
            "connect to {target}: not granted (the Blueprint's spec.grants.net)"
        )),
        std::io::ErrorKind::TimedOut => Error::Timeout(format!("connect to {target}")),
        _ => Error::Io(format!("connect to {target}: {e}")),
    }
}
