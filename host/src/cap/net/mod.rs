//! The `net` capability: TCP to the peers the Blueprint grants, through wasi:sockets.
//! wasmtime's socket-address check is the gate ([`Gate::check`]): it sees every bind,
//! listen, connect and UDP use of the plugin's sockets, and allows only a connect to an
//! address a grant covers (or one [`resolve`](net::Host::resolve) returned for a granted
//! name and port), plus the ephemeral bind the OS does for it. wasi's own name lookup stays
//! off: a plugin cannot send a DNS query for a name nobody granted. A plugin that declares
//! no `net`, or whose Blueprint grants none, gets no TCP at all. Each connect, allowed or
//! not, and each lookup is on the action's audit trail; so is each connection when it
//! closes, with its bytes each way and how long it was open ([`connection`]).

mod connection;
mod grant;

pub use connection::link as link_connection_audit;
pub use grant::check_grants;

use super::{Backends, CapView, Capability, Grant, Grants, HasCap, HostResult};
use crate::cap::ActionScope;
use crate::wit::WitError;
use crate::wit::abi::net;
use coffer_manifest::net::{NetTarget, canonical};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime_wasi::sockets::SocketAddrUse;

/// How long a name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses one lookup may return (more are dropped).
const MAX_ADDRESSES: usize = 32;

/// What the plugin may reach, shared by the lookups and the socket check of one call.
pub struct Gate {
    grant: Grant<Vec<NetTarget>>,
    /// The names each address was looked up as (what a connect to it is judged by).
    resolved: Mutex<HashMap<IpAddr, BTreeSet<String>>>,
}

pub struct Net {
    gate: Arc<Gate>,
}

fn targets(raw: &[String]) -> Vec<NetTarget> {
    // Both sides were checked when loaded (manifest, Blueprint); a bad entry grants nothing.
    raw.iter()
        .filter_map(|t| NetTarget::parse(t).ok())
        .collect()
}

impl Capability for Net {
    fn build(grants: &Grants, _: &Backends) -> Net {
        Net {
            gate: Arc::new(Gate {
                grant: Grant::new(grants, |c| targets(&c.net)),
                resolved: Mutex::default(),
            }),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        net::add_to_linker::<T, HasCap<Net>>(linker, get)
    }
}

impl Net {
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.clone()
    }
}

impl Gate {
    /// Whether the plugin has any TCP at all: it declares `net` and the Blueprint grants it.
    pub fn any(&self) -> bool {
        !self.grant.declared.is_empty() && !self.grant.granted.is_empty()
    }

    fn names_of(&self, ip: IpAddr) -> BTreeSet<String> {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
            .cloned()
            .unwrap_or_default()
    }

    fn allows_connect(&self, addr: SocketAddr) -> Result<(), WitError> {
        let (ip, port) = (canonical(addr.ip()), addr.port());
        let names = self.names_of(ip);
        let covers = |ts: &Vec<NetTarget>| {
            ts.iter().any(|t| {
                t.covers_addr(ip, port) || names.iter().any(|n| t.covers_name(n, Some(port)))
            })
        };
        let what = || match names.iter().next() {
            Some(n) => format!("connect to {addr} ({n})"),
            None => format!("connect to {addr}"),
        };
        self.grant.check(covers, what, "net")
    }

    /// wasmtime's check of one socket use: a connect within the grant, and the OS's
    /// ephemeral bind before it; nothing else.
    pub fn check(&self, scope: &ActionScope, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        let started = Instant::now();
        let (target, result) = match usage {
            SocketAddrUse::TcpConnect => (format!("connect {addr}"), self.allows_connect(addr)),
            // connect binds first, to the unspecified address and port 0.
            SocketAddrUse::TcpBind if addr.ip().is_unspecified() && addr.port() == 0 => {
                return self.any();
            }
            other => (
                format!("{other:?} {addr}"),
                Err(WitError::Denied(format!(
                    "{other:?} on {addr}: a plugin may only connect out over TCP (net grants)"
                ))),
            ),
        };
        scope.audit("net", &target, "", started, &result, 0);
        if let Err(e) = &result {
            tracing::warn!(plugin = %scope.actor.plugin, target, error = %super::error_text(e), "net refused");
        }
        result.is_ok()
    }
}

/// The WASI context of a call: no files, env or args; stderr kept; TCP only through `gate`.
pub fn wasi_ctx(
    gate: Arc<Gate>,
    scope: Arc<ActionScope>,
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
) -> wasmtime_wasi::WasiCtx {
    let mut b = wasmtime_wasi::WasiCtx::builder();
    b.stderr(stderr)
        .allow_ip_name_lookup(false)
        .allow_udp(false)
        .allow_tcp(gate.any());
    if gate.any() {
        b.socket_addr_check(move |addr, usage| {
            let allowed = gate.check(&scope, addr, usage);
            Box::pin(async move { allowed })
        });
    }
    b.build()
}

impl net::Host for CapView<'_, Net> {
    async fn resolve(&mut self, host: String) -> HostResult<Vec<String>> {
        let started = Instant::now();
        let gate = self.cap.gate.clone();
        let result = lookup(&gate, &host).await;
        self.scope
            .audit("net", &format!("resolve {host}"), "", started, &result, 0);
        Ok(result)
    }
}

async fn lookup(gate: &Gate, host: &str) -> Result<Vec<String>, WitError> {
    if host.is_empty() || host.len() > 253 || host.parse::<IpAddr>().is_ok() {
        return Err(WitError::InvalidArgument(format!(
            "resolve {host:?}: give a DNS name (connect to an address directly)"
        )));
    }
    gate.grant.check(
        |ts| ts.iter().any(|t| t.covers_name(host, None)),
        || format!("resolve {host}"),
        "net",
    )?;
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| WitError::Timeout(format!("resolving {host}")))?
        .map_err(|e| WitError::NotFound(format!("resolving {host}: {e}")))?;
    let ips: Vec<IpAddr> = found
        .map(|a| canonical(a.ip()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_ADDRESSES)
        .collect();
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let mut resolved = gate.resolved.lock().unwrap_or_else(|p| p.into_inner());
    for ip in &ips {
        resolved.entry(*ip).or_default().insert(name.clone());
    }
    Ok(ips.iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_manifest::Capabilities;

    fn gate(declared: &[&str], granted: &[&str]) -> Gate {
        let caps = |v: &[&str]| Capabilities {
            net: v.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let grants = Grants {
            declared: caps(declared),
            granted: caps(granted),
            plugin: "p".into(),
            blueprint: "b".into(),
        };
        Gate {
            grant: Grant::new(&grants, |c| targets(&c.net)),
            resolved: Mutex::default(),
        }
    }

    #[test]
    fn connects_are_allowed_only_within_both_sides() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let g = gate(&["*:*"], &["127.0.0.1:9092", "*.kafka.svc:9092"]);
        assert!(g.any());
        assert!(g.allows_connect(a("127.0.0.1:9092")).is_ok());
        assert!(g.allows_connect(a("[::ffff:127.0.0.1]:9092")).is_ok());
        let denied = g.allows_connect(a("127.0.0.1:22")).unwrap_err();
        assert!(super::super::error_text(&denied).contains("not granted by Blueprint b"));
        // An address is reachable by name only once looked up as a granted name.
        assert!(g.allows_connect(a("10.1.2.3:9092")).is_err());
        g.resolved
            .lock()
            .unwrap()
            .entry("10.1.2.3".parse().unwrap())
            .or_default()
            .insert("b-0.kafka.svc".into());
        assert!(g.allows_connect(a("10.1.2.3:9092")).is_ok());
        assert!(g.allows_connect(a("10.1.2.3:9093")).is_err());
        // The manifest limits what a Blueprint can grant.
        let narrow = gate(&["*:9092"], &["127.0.0.1:*"]);
        assert!(narrow.allows_connect(a("127.0.0.1:9092")).is_ok());
        let e = narrow.allows_connect(a("127.0.0.1:80")).unwrap_err();
        assert!(super::super::error_text(&e).contains("not declared"));
        assert!(!gate(&[], &["127.0.0.1:1"]).any());
        assert!(!gate(&["*:*"], &[]).any());
    }
}
