//! Plugin signatures: ed25519 over the plugin's sha256, so a Blueprint can require that a
//! plugin was signed by a key the operator trusts. Keys and signatures are hex text files.

use anyhow::{Context, Result, anyhow, bail};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::path::{Path, PathBuf};

/// What is signed: a domain tag and the plugin's sha256, so a signature cannot be replayed
/// as anything else.
fn message(sha256_hex: &str) -> Vec<u8> {
    format!("coffer plugin signature v1\n{sha256_hex}").into_bytes()
}

fn read_hex<const N: usize>(text: &str, what: &str) -> Result<[u8; N]> {
    let clean: String = text.split_whitespace().collect();
    let bytes = hex::decode(&clean).map_err(|e| anyhow!("{what} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow!("{what} must be {N} bytes, found {}", b.len()))
}

/// The default place of a plugin's signature: `<file>.sig`.
pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut p = plugin.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

/// Write a new key pair: `<out>` (private, mode 0600) and `<out>.pub`.
pub fn keygen(out: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("the OS random source failed: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
    writeln!(f, "{}", hex::encode(key.to_bytes()))?;
    let public = hex::encode(key.verifying_key().to_bytes());
    let pub_path = out.with_extension("pub");
    std::fs::write(&pub_path, format!("{public}\n"))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    Ok(public)
}

/// Sign a plugin digest with the private key in `key_file`; returns the signature as hex.
pub fn sign(sha256_hex: &str, key_file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let key = SigningKey::from_bytes(&read_hex::<32>(&text, "the private key")?);
    Ok(hex::encode(key.sign(&message(sha256_hex)).to_bytes()))
}

/// Check a hex signature of a plugin digest against a hex public key.
pub fn verify(sha256_hex: &str, signature_hex: &str, public_key_hex: &str) -> Result<()> {
    let key = VerifyingKey::from_bytes(&read_hex::<32>(public_key_hex, "the public key")?)
        .map_err(|e| anyhow!("the public key is not a valid ed25519 key: {e}"))?;
    let sig = Signature::from_bytes(&read_hex::<64>(signature_hex, "the signature")?);
    if key.verify(&message(sha256_hex), &sig).is_err() {
        bail!("the signature does not match this plugin and key");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let public = keygen(&key).unwrap();
        assert_eq!(
            std::fs::read_to_string(key.with_extension("pub"))
                .unwrap()
                .trim(),
            public
        );
        assert!(keygen(&key).is_err(), "keygen never overwrites a key");
        let digest = "ab".repeat(32);
        let sig = sign(&digest, &key).unwrap();
        verify(&digest, &sig, &public).unwrap();
        assert!(
            verify(&"cd".repeat(32), &sig, &public)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        let other = dir.path().join("o");
        let other_pub = keygen(&other).unwrap();
        assert!(verify(&digest, &sig, &other_pub).is_err());
        assert!(
            verify(&digest, "zz", &public)
                .unwrap_err()
                .to_string()
                .contains("not hex")
        );
    }
}
