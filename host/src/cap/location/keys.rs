//! Object keys a plugin may use: relative, confined to the action's prefix.

use crate::runtime::bindings::WitError;

/// The manifest object that commits a restore point; written by the host only.
pub const MANIFEST_NAME: &str = "coffer-manifest.json";
const ZSTD_SUFFIX: &str = ".zst";
const MAX_KEY: usize = 1024;

/// Refuse keys that could leave the prefix or collide with what the host writes.
pub fn check_key(key: &str) -> Result<(), WitError> {
    let bad = |why: &str| Err(WitError::InvalidArgument(format!("key {key:?}: {why}")));
    if key.is_empty() {
        return bad("is empty");
    }
    if key.len() > MAX_KEY {
        return bad("is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("must be relative (no leading '/')");
    }
    if key.chars().any(|c| c.is_control() || c == '\\' || c == '#') {
        return bad("has a control character, a backslash or '#'");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("has an empty, '.' or '..' segment");
        }
    }
    if key.ends_with(ZSTD_SUFFIX) {
        return bad("may not end in .zst (the host adds it to compressed objects)");
    }
    if key == MANIFEST_NAME {
        return bad("is the restore point manifest, which only the host writes");
    }
    Ok(())
}

/// The key an object is stored under: compressed objects get `.zst`, so standard tools
/// recognise them.
pub fn stored_key(key: &str, compressed: bool) -> String {
    if compressed {
        format!("{key}{ZSTD_SUFFIX}")
    } else {
        key.to_string()
    }
}

/// The plugin's key for a stored key, and whether it is compressed.
pub fn logical_key(stored: &str) -> (String, bool) {
    match stored.strip_suffix(ZSTD_SUFFIX) {
        Some(k) => (k.to_string(), true),
        None => (stored.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a/./b",
            "x.zst",
            MANIFEST_NAME,
            "a\\b",
            "a\nb",
            "a#1",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "globals.sql",
            "databases/shop.pgdump",
            "a/b/c",
            "..x",
            "x..y",
        ] {
            assert!(check_key(good).is_ok(), "{good:?} should be allowed");
        }
        assert_eq!(
            logical_key(&stored_key("a/b", true)),
            ("a/b".to_string(), true)
        );
    }
}
