//! Object keys a plugin may use: relative, confined to the action's prefix.

use crate::storage::keys::{AGE_SUFFIX, APPLICATION_NAME, MANIFEST_NAME, ZSTD_SUFFIX};
use crate::wit::WitError;

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
    if key.ends_with(ZSTD_SUFFIX) || key.ends_with(AGE_SUFFIX) {
        return bad(
            "may not end in .zst or .age (the host adds them to compressed and encrypted objects)",
        );
    }
    // `coffer-manifest.json/x` would make the manifest's path a directory in a file
    // Profile, so the backup could never commit.
    if key.split('/').next() == Some(MANIFEST_NAME) {
        return bad("is (or is under) the restore point manifest, which only the host writes");
    }
    if key.split('/').next() == Some(APPLICATION_NAME) {
        return bad("is (or is under) the application's resources, which only the host writes");
    }
    Ok(())
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
            "x.age",
            MANIFEST_NAME,
            "coffer-manifest.json/x",
            APPLICATION_NAME,
            "coffer-application.json/x",
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
    }
}
