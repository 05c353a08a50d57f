//! The Kubernetes rules for names (DNS-1123), which coffer's own names follow too: they end
//! up in API URLs, object keys and paths.

/// A DNS-1123 label: what namespaces (and many names) must be.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what most object names must be.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}
