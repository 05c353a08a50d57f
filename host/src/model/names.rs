//! The Kubernetes rules for names (DNS-1123), which coffer's own names follow too: they end
//! up in API URLs, object keys and paths.

/// A DNS-1123 label: what namespaces (and many names) must be.
pub fn is_label(s: &str) -> bool {
    coffer_manifest::is_dns_label(s)
}

/// A DNS-1123 subdomain: what most object names must be.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}
