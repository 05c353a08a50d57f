//! A Blueprint's `spec.grants.net`, checked when it is applied and when an action starts.

use coffer_manifest::Capabilities;
use coffer_manifest::net::{NetHost, NetTarget};

/// Problems with a Blueprint's `spec.grants.net`, as a message for `coffer apply`.
pub fn check_grants(c: &Capabilities) -> Result<(), String> {
    for (i, t) in c.net.iter().enumerate() {
        let parsed = NetTarget::parse(t).map_err(|e| format!("net[{i}]: {e}"))?;
        if parsed.host == NetHost::Any {
            return Err(format!(
                "net[{i}]: {t:?} would let the plugin reach any host; grant the hosts it needs (an address, a name, or *.domain)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_their_hosts() {
        let c = |v: &[&str]| Capabilities {
            net: v.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(check_grants(&c(&["127.0.0.1:9092", "*.kafka.svc:*"])).is_ok());
        assert!(
            check_grants(&c(&["*:9092"]))
                .unwrap_err()
                .contains("any host")
        );
        assert!(check_grants(&c(&["kafka"])).unwrap_err().contains("net[0]"));
    }
}
