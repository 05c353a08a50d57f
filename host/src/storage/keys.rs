//! How objects are named in a location: the manifest, and the suffixes compressed and
//! encrypted objects are stored under (so standard tools recognise them).

/// The manifest object that commits a restore point; written by the host only.
pub const MANIFEST_NAME: &str = "coffer-manifest.json";
/// The application's Kubernetes resources a backup captured (only the host writes it).
pub const APPLICATION_NAME: &str = "coffer-application.json";
pub const ZSTD_SUFFIX: &str = ".zst";
pub const AGE_SUFFIX: &str = ".age";

/// The key an object is stored under: compressed objects get `.zst`, encrypted ones then
/// `.age`, so standard tools recognise them (`age -d | zstd -d`).
pub fn stored_key(key: &str, compressed: bool, encrypted: bool) -> String {
    let mut k = key.to_string();
    if compressed {
        k.push_str(ZSTD_SUFFIX);
    }
    if encrypted {
        k.push_str(AGE_SUFFIX);
    }
    k
}

/// Every key an object with this plugin key may be stored under.
pub fn stored_variants(key: &str) -> [String; 4] {
    [
        stored_key(key, true, true),
        stored_key(key, true, false),
        stored_key(key, false, true),
        stored_key(key, false, false),
    ]
}

/// The plugin's key for a stored key.
pub fn logical_key(stored: &str) -> String {
    let k = stored.strip_suffix(AGE_SUFFIX).unwrap_or(stored);
    k.strip_suffix(ZSTD_SUFFIX).unwrap_or(k).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_carry_their_encodings_and_map_back() {
        for v in stored_variants("a/b") {
            assert_eq!(logical_key(&v), "a/b");
        }
        assert_eq!(stored_key("a/b", true, true), "a/b.zst.age");
        assert_eq!(stored_key("a/b", false, true), "a/b.age");
        assert_eq!(stored_key("a/b", true, false), "a/b.zst");
        assert_eq!(stored_key("a/b", false, false), "a/b");
    }
}
