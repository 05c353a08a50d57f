//! Client-side encryption with age (X25519 recipients, the standard age format), so a
//! stored object reads back with `age -d -i key.txt obj.zst.age | zstd -d`. Encryption
//! streams in age's 64 KiB chunks: memory stays bounded whatever the object's size.

use crate::credentials::Credentials;
use crate::model::{EncryptionSpec, ProfileType, SecretRef};
use age::x25519;
use anyhow::{Result, bail};
use bytes::Bytes;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The encryption of one Profile: who can decrypt, and where the identity to decrypt with
/// is read from (only when something must be decrypted).
#[derive(Clone)]
pub struct Encryption {
    pub profile: String,
    recipients: Vec<x25519::Recipient>,
    identity: Option<SecretRef>,
    credentials: Credentials,
    /// The identities, read once per opened Profile (a restore decrypts many objects).
    identities: Arc<std::sync::OnceLock<Result<Arc<Vec<x25519::Identity>>, String>>>,
}

impl Encryption {
    /// The Profile's choice. Remote types must choose: age recipients, or `none` on purpose.
    pub fn from_spec(
        profile: &str,
        kind: ProfileType,
        spec: Option<&EncryptionSpec>,
        credentials: &Credentials,
    ) -> Result<Option<Encryption>> {
        let age = match spec {
            None if kind.is_remote() => bail!(
                "Profile {profile}: spec.encryption is required for type {}: give age recipients (`encryption: {{recipients: [age1...]}}`), or `encryption: none` to store plaintext on purpose",
                kind.as_str()
            ),
            None => return Ok(None),
            Some(EncryptionSpec::Keyword(k)) if k == "none" => return Ok(None),
            Some(EncryptionSpec::Keyword(k)) => bail!(
                "Profile {profile}: spec.encryption {k:?} is not `none` or {{recipients: [...]}}"
            ),
            Some(EncryptionSpec::Age(a)) => a,
        };
        if age.recipients.is_empty() {
            bail!(
                "Profile {profile}: spec.encryption.recipients is empty; give at least one age1... recipient"
            );
        }
        let mut recipients = Vec::new();
        for (i, r) in age.recipients.iter().enumerate() {
            let parsed = r.trim().parse::<x25519::Recipient>().map_err(|e| {
                anyhow::anyhow!(
                    "Profile {profile}: spec.encryption.recipients[{i}] {r:?} is not an age X25519 recipient (age1...): {e}"
                )
            })?;
            recipients.push(parsed);
        }
        if let Some(id) = &age.identity
            && !id.is_well_formed()
        {
            bail!(
                "Profile {profile}: spec.encryption.identity: give exactly one of `file`, `env` or (on Kubernetes) `secret`"
            );
        }
        Ok(Some(Encryption {
            profile: profile.to_string(),
            recipients,
            identity: age.identity.clone(),
            credentials: credentials.clone(),
            identities: Default::default(),
        }))
    }

    /// The recipients, as `age1...` text: all a mover needs to encrypt (nothing it could
    /// decrypt with).
    pub fn recipients_text(&self) -> Vec<String> {
        self.recipients.iter().map(|r| r.to_string()).collect()
    }

    /// Encryption to `recipients` only, for a process that seals and never opens (a mover).
    pub fn sealing_only(profile: &str, recipients: &[String]) -> Result<Encryption> {
        let mut parsed = Vec::new();
        for r in recipients {
            parsed.push(r.trim().parse::<x25519::Recipient>().map_err(|e| {
                anyhow::anyhow!(
                    "Profile {profile}: recipient {r:?} is not an age X25519 recipient: {e}"
                )
            })?);
        }
        if parsed.is_empty() {
            bail!("Profile {profile}: no recipients to encrypt to");
        }
        Ok(Encryption {
            profile: profile.to_string(),
            recipients: parsed,
            identity: None,
            credentials: Credentials::local(),
            identities: Default::default(),
        })
    }

    /// Start encrypting one object.
    pub fn sealer(&self) -> Result<Sealer, String> {
        let enc = age::Encryptor::with_recipients(
            self.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| format!("age: {e}"))?;
        let out = SharedBuf::default();
        let writer = enc
            .wrap_output(out.clone())
            .map_err(|e| format!("age: {e}"))?;
        Ok(Sealer { writer, out })
    }

    /// The identities to decrypt with, read from the Profile's identity secret.
    pub fn identities(&self) -> Result<Arc<Vec<x25519::Identity>>, String> {
        self.identities
            .get_or_init(|| self.read_identities())
            .clone()
    }

    fn read_identities(&self) -> Result<Arc<Vec<x25519::Identity>>, String> {
        let p = &self.profile;
        let Some(r) = &self.identity else {
            return Err(format!(
                "Profile {p} encrypts with age, but has no spec.encryption.identity to decrypt with; add one (a file or an environment variable holding AGE-SECRET-KEY-1...)"
            ));
        };
        let text = self
            .credentials
            .read(&format!("Profile {p}: spec.encryption.identity"), r)?;
        parse_identities(&text)
            .map(Arc::new)
            .map_err(|e| format!("Profile {p}: spec.encryption.identity: {e}"))
    }
}

/// The X25519 identities of an age identity file (comments and blank lines allowed).
/// Never echoes the key material in errors.
fn parse_identities(text: &str) -> Result<Vec<x25519::Identity>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = line.parse::<x25519::Identity>().map_err(|_| {
            format!(
                "line {} is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                n + 1
            )
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err("holds no AGE-SECRET-KEY-1... identity".into());
    }
    Ok(out)
}

/// A `Write` whose bytes the pipeline takes out after each chunk.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.0.lock().unwrap()))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encrypts one object chunk by chunk, handing back the ciphertext produced so far.
pub struct Sealer {
    writer: age::stream::StreamWriter<SharedBuf>,
    out: SharedBuf,
}

impl Sealer {
    pub fn push(&mut self, plain: &[u8]) -> Result<Bytes, String> {
        self.writer
            .write_all(plain)
            .map_err(|e| format!("age: {e}"))?;
        Ok(self.out.take())
    }
    pub fn finish(self) -> Result<Bytes, String> {
        let out = self.writer.finish().map_err(|e| format!("age: {e}"))?;
        Ok(out.take())
    }
}

/// A decryption error as the user should read it.
pub fn decrypt_error_text(profile: &str, e: &age::DecryptError) -> String {
    match e {
        age::DecryptError::NoMatchingKeys => format!(
            "the age identity of Profile {profile} (spec.encryption.identity) is not one of the recipients this object was encrypted to; use the identity that matches the recipients the backup was made with"
        ),
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            "the object is not in age format (corrupt, or not written encrypted)".into()
        }
        other => format!("age: cannot decrypt: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn seals_in_chunks_and_age_reads_it_back() {
        let id = x25519::Identity::generate();
        let enc = Encryption {
            credentials: Credentials::local(),
            profile: "p".into(),
            recipients: vec![id.to_public()],
            identity: None,
            identities: Default::default(),
        };
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = enc.sealer().unwrap();
        let mut sealed = Vec::new();
        for c in plain.chunks(70_000) {
            sealed.extend_from_slice(&s.push(c).unwrap());
        }
        sealed.extend_from_slice(&s.finish().unwrap());
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
        let d = age::Decryptor::new(&sealed[..]).unwrap();
        let mut r = d
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut back).unwrap();
        assert_eq!(back, plain);

        let text = format!(
            "# created: now\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        );
        assert_eq!(parse_identities(&text).unwrap().len(), 1);
        let err = parse_identities("AGE-SECRET-KEY-1NOTAKEY").err().unwrap();
        assert!(!err.contains("NOTAKEY"), "{err}");
    }

    #[test]
    fn remote_profiles_must_choose() {
        let e = Encryption::from_spec("s3", ProfileType::S3, None, &Credentials::local())
            .err()
            .unwrap();
        assert!(e.to_string().contains("encryption: none"), "{e}");
        assert!(
            Encryption::from_spec("f", ProfileType::File, None, &Credentials::local())
                .unwrap()
                .is_none()
        );
        let none = EncryptionSpec::Keyword("none".into());
        assert!(
            Encryption::from_spec("s3", ProfileType::S3, Some(&none), &Credentials::local())
                .unwrap()
                .is_none()
        );
        let bad = EncryptionSpec::Age(crate::model::AgeSpec {
            recipients: vec!["age1nope".into()],
            identity: None,
        });
        let e = Encryption::from_spec("s3", ProfileType::S3, Some(&bad), &Credentials::local())
            .err()
            .unwrap();
        assert!(e.to_string().contains("recipients[0]"), "{e}");
    }
}
