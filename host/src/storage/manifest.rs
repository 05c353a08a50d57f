//! A restore point's manifest, authenticated. The manifest object (the RestorePoint as
//! JSON, written last) carries an HMAC-SHA256 under a key only coffer holds — a file in the
//! state dir locally, a Secret in the daemon's namespace on Kubernetes — so a restore or a
//! delete acts on what coffer itself recorded, never on what a RestorePoint resource (which
//! a namespace's tenant can write) or a forged object in the location says.

use crate::model::RestorePoint;
use anyhow::{Context, Result, anyhow, bail};
use hmac::{Hmac, Mac};
use std::path::Path;

type HmacSha256 = Hmac<sha2::Sha256>;

/// The field of the manifest JSON that holds its MAC.
const MAC_FIELD: &str = "mac";
/// Domain separation: this key signs nothing else.
const CONTEXT: &[u8] = b"coffer restore point manifest v1\n";
const KEY_BYTES: usize = 32;

/// The key manifests are signed with.
#[derive(Clone)]
pub struct ManifestKey([u8; KEY_BYTES]);

impl ManifestKey {
    pub fn generate() -> ManifestKey {
        let mut k = [0u8; KEY_BYTES];
        getrandom::fill(&mut k).expect("the OS random source failed");
        ManifestKey(k)
    }

    /// From stored bytes (a Secret's value): the first 32 of at least 32.
    pub fn from_bytes(b: &[u8]) -> Result<ManifestKey> {
        if b.len() < KEY_BYTES {
            bail!(
                "the manifest key is {} bytes; it needs {KEY_BYTES}",
                b.len()
            );
        }
        let mut k = [0u8; KEY_BYTES];
        k.copy_from_slice(&b[..KEY_BYTES]);
        Ok(ManifestKey(k))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The local key file (mode 0600), made on first use.
    pub fn load_or_create(path: &Path) -> Result<ManifestKey> {
        match std::fs::read(path) {
            Ok(b) => ManifestKey::from_bytes(&b)
                .with_context(|| format!("reading the manifest key {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ManifestKey::generate();
                crate::home::write_private(path, &key.0)
                    .with_context(|| format!("writing the manifest key {}", path.display()))?;
                Ok(key)
            }
            Err(e) => {
                Err(e).with_context(|| format!("reading the manifest key {}", path.display()))
            }
        }
    }

    fn mac(&self, body: &serde_json::Value) -> Result<HmacSha256> {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(CONTEXT);
        m.update(&serde_json::to_vec(body)?);
        Ok(m)
    }

    fn tag_mac(&self, purpose: &str, fields: &[&str]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(b"coffer tag\n");
        for f in std::iter::once(purpose).chain(fields.iter().copied()) {
            // Length-prefixed, so no two field lists give the same bytes.
            m.update(&(f.len() as u64).to_be_bytes());
            m.update(f.as_bytes());
        }
        m
    }

    /// A MAC over `fields` for `purpose` (never a manifest's: the purpose is its domain),
    /// hex: what proves a record was made by a coffer holding this key (Policy seals).
    pub fn tag(&self, purpose: &str, fields: &[&str]) -> String {
        hex::encode(self.tag_mac(purpose, fields).finalize().into_bytes())
    }

    /// Whether `tag` is [`ManifestKey::tag`] of `purpose` and `fields` (constant time).
    pub fn check_tag(&self, purpose: &str, fields: &[&str], tag: &str) -> bool {
        hex::decode(tag).is_ok_and(|want| self.tag_mac(purpose, fields).verify_slice(&want).is_ok())
    }

    /// The manifest's bytes: the RestorePoint as JSON with its MAC.
    pub fn seal(&self, rp: &RestorePoint) -> Result<Vec<u8>> {
        let mut v = serde_json::to_value(rp)?;
        let mac = hex::encode(self.mac(&v)?.finalize().into_bytes());
        v.as_object_mut()
            .ok_or_else(|| anyhow!("a RestorePoint serializes to an object"))?
            .insert(MAC_FIELD.into(), serde_json::Value::String(mac));
        Ok(serde_json::to_vec_pretty(&v)?)
    }

    /// A manifest read from the location, if its MAC is right. `what` names it in errors.
    pub fn open(&self, bytes: &[u8], what: &str) -> Result<RestorePoint> {
        let mut v: serde_json::Value =
            serde_json::from_slice(bytes).with_context(|| format!("{what} is not JSON"))?;
        let mac = v
            .as_object_mut()
            .and_then(|o| o.remove(MAC_FIELD))
            .and_then(|m| m.as_str().map(String::from))
            .ok_or_else(|| {
                anyhow!(
                    "{what} carries no MAC: it was not written by this coffer (or by one before manifests were signed); refusing to trust it"
                )
            })?;
        let want = hex::decode(&mac).map_err(|_| anyhow!("{what}: its MAC is not hex"))?;
        self.mac(&v)?.verify_slice(&want).map_err(|_| {
            anyhow!(
                "{what} does not carry a valid MAC: it was changed, or written with another coffer's key; refusing to trust it"
            )
        })?;
        serde_json::from_value(v).with_context(|| format!("{what} is not a RestorePoint"))
    }
}

/// What a restore point's prefix must be: derived from where it belongs, never taken from
/// the record. Local: `restorepoints/<workload>/<name>`; on Kubernetes the caller passes
/// `restorepoints/<namespace>/<kind>-<name>` as `root`.
pub fn expected_prefix(root: &str, rp: &RestorePoint) -> Result<String> {
    let name = rp.name();
    if !crate::model::names::is_subdomain(name) {
        bail!("RestorePoint name {name:?} is not a valid name");
    }
    Ok(format!("{root}/{name}"))
}

/// Every object has a real digest (an empty one would be read unverified).
pub fn check_digests(rp: &RestorePoint) -> Result<()> {
    for o in &rp.spec.objects {
        if o.sha256.len() != 64 || !o.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "RestorePoint {}: object {} has no valid sha256 ({:?}); it cannot be verified",
                rp.name(),
                o.key,
                o.sha256
            );
        }
    }
    Ok(())
}

/// Read and authenticate the manifest under `prefix`. `Ok(None)`: there is none.
pub async fn read(
    loc: &crate::storage::Location,
    key: &ManifestKey,
    prefix: &str,
) -> Result<Option<RestorePoint>> {
    use object_store::ObjectStoreExt;
    let path = format!("{prefix}/{}", crate::storage::MANIFEST_NAME);
    let got = match loc
        .store
        .get(&object_store::path::Path::from(path.as_str()))
        .await
    {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => bail!(
            "reading {path} from Profile {}: {}",
            loc.profile,
            crate::storage::store_error(&e)
        ),
    };
    let body = got
        .bytes()
        .await
        .with_context(|| format!("reading {path} from Profile {}", loc.profile))?;
    let rp = key.open(
        &body,
        &format!("the manifest {path} in Profile {}", loc.profile),
    )?;
    check_digests(&rp)?;
    Ok(Some(rp))
}

/// A RestorePoint record (catalog or resource) must say what its authenticated manifest
/// says: same name, workload, Profile, place and objects.
pub fn check_matches(record: &RestorePoint, manifest: &RestorePoint) -> Result<()> {
    let differs = |what: &str| {
        anyhow!(
            "RestorePoint {} does not match its manifest in Profile {} ({what} differ); the record was changed — refusing to use it",
            record.name(),
            manifest.spec.profile
        )
    };
    if record.name() != manifest.name() {
        return Err(differs("names"));
    }
    if record.spec.workload != manifest.spec.workload {
        return Err(differs("workloads"));
    }
    if record.spec.profile != manifest.spec.profile {
        return Err(differs("Profiles"));
    }
    if record.spec.prefix != manifest.spec.prefix
        || record.spec.manifest_key != manifest.spec.manifest_key
    {
        return Err(differs("prefixes"));
    }
    if record.spec.objects != manifest.spec.objects {
        return Err(differs("objects"));
    }
    if record.spec.artifacts != manifest.spec.artifacts {
        return Err(differs("artifacts"));
    }
    if record.spec.base != manifest.spec.base {
        return Err(differs("bases"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp() -> RestorePoint {
        crate::model::restorepoint::sample("shop", "shop-1")
    }

    #[test]
    fn tags_bind_their_purpose_and_every_field() {
        let key = ManifestKey::generate();
        let t = key.tag("p", &["db", "a-b"]);
        assert!(key.check_tag("p", &["db", "a-b"], &t));
        assert!(!key.check_tag("q", &["db", "a-b"], &t));
        // Moving a boundary between fields changes the tag.
        assert!(!key.check_tag("p", &["db-a", "b"], &t));
        assert!(!key.check_tag("p", &["db", "a-b"], "00"));
        assert!(!ManifestKey::generate().check_tag("p", &["db", "a-b"], &t));
    }

    #[test]
    fn a_changed_or_foreign_manifest_is_refused() {
        let key = ManifestKey::generate();
        let sealed = key.seal(&rp()).unwrap();
        assert_eq!(key.open(&sealed, "m").unwrap(), rp());
        // One changed field.
        let tampered = String::from_utf8(sealed.clone())
            .unwrap()
            .replace("restorepoints/shop/shop-1\"", "restorepoints/other/x\"");
        let e = key.open(tampered.as_bytes(), "m").unwrap_err().to_string();
        assert!(e.contains("valid MAC"), "{e}");
        // Another key.
        assert!(ManifestKey::generate().open(&sealed, "m").is_err());
        // No MAC at all.
        let plain = serde_json::to_vec(&rp()).unwrap();
        assert!(
            key.open(&plain, "m")
                .unwrap_err()
                .to_string()
                .contains("no MAC")
        );
        assert_eq!(
            expected_prefix("restorepoints/shop", &rp()).unwrap(),
            "restorepoints/shop/shop-1"
        );
    }
}
