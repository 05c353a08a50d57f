//! `net` grants: the TCP peers a plugin may connect to, as `host:port`. The host is an IP
//! address (`127.0.0.1`, `[::1]`), a DNS name (`kafka-0.kafka.svc`), a name under a domain
//! (`*.kafka.svc`), or `*` (any: for a manifest that leaves the choice to the Blueprint);
//! the port a number or `*`. A name is reached only through the host's lookup, which
//! answers only for granted names; an address the plugin got any other way must itself be
//! granted.

use std::net::IpAddr;

/// One parsed `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetTarget {
    pub host: NetHost,
    /// None: any port.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetHost {
    Any,
    Ip(IpAddr),
    /// Lower-case; a leading `*.` matches any name under the rest (not the rest itself).
    Name(String),
}

impl NetTarget {
    pub fn parse(s: &str) -> Result<NetTarget, String> {
        let bad = |why: &str| {
            format!(
                "net {s:?}: {why}; write host:port, e.g. 127.0.0.1:9092, [::1]:9092, kafka-0.kafka.svc:9092 or *.kafka.svc:*"
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port is not 1-65535 or *"))?,
            ),
        };
        let host = if host == "*" {
            NetHost::Any
        } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            NetHost::Ip(IpAddr::V6(
                v6.parse().map_err(|_| bad("not an IPv6 address"))?,
            ))
        } else if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            NetHost::Ip(IpAddr::V4(ip))
        } else {
            let name = host.to_ascii_lowercase();
            let plain = name.strip_prefix("*.").unwrap_or(&name);
            if plain.is_empty()
                || plain.len() > 253
                || !plain.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
            {
                return Err(bad("the host is not an IP address or a DNS name"));
            }
            NetHost::Name(name)
        };
        Ok(NetTarget { host, port })
    }

    fn port_ok(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether this grant covers connecting to `ip:port` directly (an address grant).
    pub fn covers_addr(&self, ip: IpAddr, port: u16) -> bool {
        self.port_ok(port)
            && match &self.host {
                NetHost::Any => true,
                NetHost::Ip(g) => *g == canonical(ip),
                NetHost::Name(_) => false,
            }
    }

    /// Whether this grant covers looking up `name` (and connecting to what it resolves to
    /// on `port`, when given).
    pub fn covers_name(&self, name: &str, port: Option<u16>) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        port.is_none_or(|p| self.port_ok(p))
            && match &self.host {
                NetHost::Any => true,
                NetHost::Ip(_) => false,
                NetHost::Name(g) => match g.strip_prefix("*.") {
                    Some(domain) => name
                        .strip_suffix(domain)
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                    None => *g == name,
                },
            }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_match() {
        let t = |s: &str| NetTarget::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t("127.0.0.1:9092").covers_addr(ip("127.0.0.1"), 9092));
        assert!(t("127.0.0.1:9092").covers_addr(ip("::ffff:127.0.0.1"), 9092));
        assert!(!t("127.0.0.1:9092").covers_addr(ip("127.0.0.1"), 9093));
        assert!(!t("127.0.0.1:9092").covers_addr(ip("127.0.0.2"), 9092));
        assert!(t("[::1]:*").covers_addr(ip("::1"), 1));
        assert!(t("*.kafka.svc:9092").covers_name("b-0.kafka.svc", Some(9092)));
        assert!(t("*.kafka.svc:9092").covers_name("B-0.Kafka.SVC.", None));
        assert!(!t("*.kafka.svc:9092").covers_name("kafka.svc", Some(9092)));
        assert!(!t("*.kafka.svc:9092").covers_name("evilkafka.svc", Some(9092)));
        assert!(!t("*.kafka.svc:9092").covers_name("b-0.kafka.svc.evil.com", Some(9092)));
        assert!(!t("*.kafka.svc:9092").covers_name("b-0.kafka.svc", Some(80)));
        assert!(
            !t("kafka.svc:9092").covers_addr(ip("10.0.0.1"), 9092),
            "a name grant is not an address grant"
        );
        assert!(t("*:*").covers_addr(ip("10.0.0.1"), 1));
        for bad in [
            "",
            "host",
            "host:0",
            "host:99999",
            "a b:1",
            "-x.y:1",
            "[zz]:1",
            "*.:1",
            "x..y:1",
        ] {
            assert!(NetTarget::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
