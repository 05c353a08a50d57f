//! Names that go into Kubernetes API URLs: checked before any URL is built, since kube-rs
//! puts them into the path as they are (a namespace `kube-system/secrets/x?` would address
//! another resource). Errors name the field and the rule.

pub use crate::model::names::{is_label, is_subdomain};
use crate::wit::WitError;

fn bad(what: &str, value: &str, rule: &str) -> WitError {
    WitError::InvalidArgument(format!(
        "{what} {:?} is not a valid Kubernetes {rule}",
        value.chars().take(100).collect::<String>()
    ))
}

pub fn namespace(s: &str) -> Result<(), WitError> {
    if is_label(s) {
        Ok(())
    } else {
        Err(bad(
            "namespace",
            s,
            "namespace (lowercase letters, digits and '-', at most 63)",
        ))
    }
}

pub fn name(s: &str) -> Result<(), WitError> {
    if is_subdomain(s) {
        Ok(())
    } else {
        Err(bad(
            "name",
            s,
            "object name (lowercase letters, digits, '-' and '.', at most 253)",
        ))
    }
}

/// `v1`, `apps/v1`, `snapshot.storage.k8s.io/v1beta1`.
pub fn api_version(s: &str) -> Result<(), WitError> {
    let (group, version) = s.rsplit_once('/').unwrap_or(("", s));
    let version_ok = !version.is_empty()
        && version.len() <= 63
        && version
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && version.starts_with('v');
    if version_ok && (group.is_empty() || is_subdomain(group)) {
        Ok(())
    } else {
        Err(bad("apiVersion", s, "API version (group/version)"))
    }
}

/// `StatefulSet`, `ConfigMap`: letters and digits.
pub fn kind(s: &str) -> Result<(), WitError> {
    let mut c = s.chars();
    if c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric())
        && s.len() <= 63
    {
        Ok(())
    } else {
        Err(bad("kind", s, "kind (letters and digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_breaking_names_are_refused() {
        for ns in [
            "kube-system/secrets/x?x=",
            "..",
            "a/b",
            "A",
            "",
            "-a",
            "a b",
            "x%2Fy",
        ] {
            assert!(namespace(ns).is_err(), "{ns:?}");
        }
        for n in ["pg/../../secrets", "x?watch=1", "x#y", "", "a..b", "UPPER"] {
            assert!(name(n).is_err(), "{n:?}");
        }
        assert!(namespace("team-a").is_ok());
        assert!(name("pg-0.data").is_ok());
        for v in ["v1", "apps/v1", "snapshot.storage.k8s.io/v1beta1"] {
            assert!(api_version(v).is_ok(), "{v}");
        }
        for v in ["", "apps/", "../v1", "apps/v1/namespaces", "v1?x"] {
            assert!(api_version(v).is_err(), "{v}");
        }
        assert!(kind("StatefulSet").is_ok());
        assert!(kind("../secrets").is_err());
    }
}
