//! Working with what is stored, outside any action: probing a Profile's permissions,
//! verifying a restore point end to end, and listing / reading / removing objects (the
//! `coffer location` commands, coffer's kando).

use super::manifest::{self, ManifestKey};
use super::pipeline::{self, Counters, Sink};
use super::{Location, store_error};
use crate::credentials::Credentials;
use crate::model::{ObjectRecord, Profile, RestorePoint};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// One permission (or property) a Profile was checked for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// Probe LIST, PUT, GET and DELETE with a throwaway object under `coffer-probe/`, then the
/// Profile's encryption keys and Object Lock. Every check runs even when one fails, so
/// the report names each missing permission.
pub async fn validate_profile(p: &Profile, credentials: &Credentials) -> Result<Vec<Probe>> {
    let loc = Location::from_profile(p, credentials)?;
    let mut out = Vec::new();
    let mut probe = |check: &str, r: Result<String, String>| {
        let ok = r.is_ok();
        out.push(Probe {
            check: check.into(),
            ok,
            detail: r.unwrap_or_else(|e| e),
        });
        ok
    };
    let key = Path::from(format!("coffer-probe/{}", hex::encode(rand_bytes::<8>())));
    let body = Bytes::from(format!("coffer profile probe {key}\n"));

    let listed = list_some(&loc, "coffer-probe").await;
    probe(
        "LIST",
        listed.map(|n| format!("listed {n} object(s) under coffer-probe/")),
    );
    let put = loc
        .store
        .put(&key, PutPayload::from(body.clone()))
        .await
        .map(|_| format!("wrote {key}"))
        .map_err(|e| store_error(&e));
    let wrote = probe("PUT", put);
    let got = if wrote {
        match loc.store.get(&key).await {
            Ok(r) => match r.bytes().await {
                Ok(b) if b == body => Ok(format!("read {key} back, {} bytes equal", b.len())),
                Ok(b) => Err(format!(
                    "read {key} back but got {} different bytes",
                    b.len()
                )),
                Err(e) => Err(store_error(&e)),
            },
            Err(e) => Err(store_error(&e)),
        }
    } else {
        // Without our own object, GET is probed on one that is surely absent: a NotFound
        // answer proves the permission, AccessDenied proves its absence.
        match loc.store.get(&key).await {
            Err(object_store::Error::NotFound { .. }) => {
                Ok("allowed (probed on a missing object, since PUT failed)".into())
            }
            Ok(_) => Ok("allowed".into()),
            Err(e) => Err(store_error(&e)),
        }
    };
    probe("GET", got);
    let deleted = match loc.store.delete(&key).await {
        Ok(()) => match loc.store.head(&key).await {
            Err(object_store::Error::NotFound { .. }) => Ok(format!("removed {key}")),
            Ok(_) if wrote => Err(format!(
                "DELETE of {key} returned OK but the object is still there"
            )),
            Ok(_) => Ok("allowed".into()),
            Err(e) => Err(store_error(&e)),
        },
        Err(object_store::Error::NotFound { .. }) if !wrote => {
            Ok("allowed (probed on a missing object, since PUT failed)".into())
        }
        Err(e) => Err(store_error(&e)),
    };
    probe("DELETE", deleted);

    match &loc.encryption {
        None => {
            probe(
                "encryption",
                Ok(if p.spec.kind.is_remote() {
                    "none, on purpose (spec.encryption: none): objects are stored in plaintext"
                        .into()
                } else {
                    "none (file location)".into()
                }),
            );
        }
        Some(enc) => {
            let r = age_round_trip(enc).await;
            probe("encryption", r);
        }
    }
    if loc.object_lock.is_some() {
        let r = loc
            .check_object_lock()
            .await
            .map(|_| "the bucket has Object Lock enabled".to_string())
            .map_err(|e| format!("{e:#}"));
        probe("object lock", r);
    }
    Ok(out)
}

async fn list_some(loc: &Location, prefix: &str) -> Result<usize, String> {
    let root = Path::from(prefix);
    let mut l = loc.store.list(Some(&root));
    let mut n = 0;
    while let Some(item) = l.next().await {
        item.map_err(|e| store_error(&e))?;
        n += 1;
        if n >= 100 {
            break;
        }
    }
    Ok(n)
}

/// Encrypt a few bytes to the Profile's recipients and decrypt them with its identity.
async fn age_round_trip(enc: &crate::storage::crypt::Encryption) -> Result<String, String> {
    let plain = b"coffer probe";
    let mut s = enc.sealer()?;
    let mut sealed = s.push(plain)?.to_vec();
    sealed.extend_from_slice(&s.finish()?);
    let ids = match enc.identities() {
        Ok(ids) => ids,
        Err(e) if e.contains("no spec.encryption.identity") => {
            return Ok(
                "age: backups are encrypted; no identity is configured, so this host cannot restore"
                    .into(),
            );
        }
        Err(e) => return Err(e),
    };
    let d = age::Decryptor::new(&sealed[..]).map_err(|e| format!("age: {e}"))?;
    let mut r = d
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| crate::storage::crypt::decrypt_error_text(&enc.profile, &e))?;
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut back).map_err(|e| format!("age: {e}"))?;
    if back != plain {
        return Err("age: decrypted bytes differ".into());
    }
    Ok("age: encrypts to the recipients, and the identity decrypts".into())
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source");
    b
}

/// The result of verifying one object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectCheck {
    pub key: String,
    pub stored_key: String,
    pub size: u64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub restore_point: String,
    pub profile: String,
    pub manifest: Probe,
    pub objects: Vec<ObjectCheck>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.manifest.ok && self.objects.iter().all(|o| o.ok)
    }
}

/// Re-read every object of restore point `rp` in `loc` (its Profile's location): stored size
/// and sha256, then decrypt and decompress to the end (sizes checked), writing nothing; and
/// its manifest, signed with `key`. `bytes` counts decoded bytes.
pub async fn verify(
    loc: &Location,
    key: &ManifestKey,
    rp: &RestorePoint,
    bytes: Arc<AtomicU64>,
) -> Result<VerifyReport> {
    let manifest = check_manifest(loc, key, rp).await;
    let counters = Counters {
        transfer: Arc::new(AtomicU64::new(0)),
        action: bytes,
    };
    let mut objects = Vec::new();
    for o in &rp.spec.objects {
        let path = Path::parse(format!("{}/{}", rp.spec.prefix, o.stored_key))?;
        let r = pipeline::download(
            loc.store.as_ref(),
            &path,
            o,
            Sink::Discard,
            Some(&counters),
            loc.encryption.as_ref(),
            pipeline::Pin::Any,
        )
        .await;
        objects.push(ObjectCheck {
            key: o.key.clone(),
            stored_key: o.stored_key.clone(),
            size: o.size,
            ok: r.is_ok(),
            detail: match r {
                Ok(_) => format!(
                    "sha256 {} matches; {}{}decoded to {} bytes",
                    &o.sha256[..12],
                    if o.encryption.is_some() {
                        "decrypted, "
                    } else {
                        ""
                    },
                    if o.compression == "zstd" {
                        "decompressed, "
                    } else {
                        ""
                    },
                    o.size
                ),
                Err(e) => e,
            },
        });
    }
    Ok(VerifyReport {
        restore_point: rp.name().to_string(),
        profile: loc.profile.clone(),
        manifest,
        objects,
    })
}

/// The manifest object must exist, carry coffer's MAC, and describe the same restore point
/// as the catalog.
async fn check_manifest(loc: &Location, key: &ManifestKey, rp: &RestorePoint) -> Probe {
    let mkey = &rp.spec.manifest_key;
    let r: Result<String, String> = async {
        let stored = manifest::read(loc, key, &rp.spec.prefix)
            .await
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| {
                format!("{mkey} is missing: the backup is incomplete or its manifest was removed")
            })?;
        manifest::check_matches(rp, &stored).map_err(|e| format!("{e:#}"))?;
        Ok(format!(
            "{mkey} present, signed by this coffer, {} object(s) listed",
            stored.spec.objects.len()
        ))
    }
    .await;
    Probe {
        check: "manifest".into(),
        ok: r.is_ok(),
        detail: r.unwrap_or_else(|e| e),
    }
}

/// One stored object as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub last_modified: String,
}

pub async fn list(loc: &Location, prefix: Option<&str>) -> Result<Vec<Listed>> {
    let root = prefix.map(|p| Path::from(p.trim_matches('/')));
    let mut l = loc.store.list(root.as_ref());
    let mut out = Vec::new();
    while let Some(item) = l.next().await {
        let m = item.with_context(|| format!("listing Profile {}", loc.profile))?;
        out.push(Listed {
            key: m.location.to_string(),
            size: m.size,
            last_modified: m.last_modified.to_rfc3339(),
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Write an object's content to `w`: decoded (decrypted and decompressed, by its `.age` /
/// `.zst` suffixes) unless `raw`.
pub async fn cat(
    loc: &Location,
    key: &str,
    raw: bool,
    w: &mut (dyn std::io::Write + Send),
) -> Result<u64> {
    let asked = key.trim_start_matches('/');
    // The key as stored, or the key a plugin wrote (then stored with `.zst` / `.age`).
    let mut found = None;
    for candidate in std::iter::once(asked.to_string()).chain(super::keys::stored_variants(asked)) {
        let path = Path::parse(&candidate).map_err(|e| anyhow!("key {candidate:?}: {e}"))?;
        match loc.store.head(&path).await {
            Ok(meta) => {
                found = Some((candidate, path, meta));
                break;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => bail!("reading {candidate}: {}", store_error(&e)),
        }
    }
    let Some((key, path, meta)) = found else {
        let parent = asked.rsplit_once('/').map_or("", |(p, _)| p);
        bail!(
            "{asked} not found in Profile {profile} (nor {asked}.zst, .age or .zst.age, the names a plugin's key is stored under when compressed or encrypted); list what is there with `coffer location ls --profile {profile} {parent}`",
            profile = loc.profile
        );
    };
    let key = key.as_str();
    let encrypted = !raw && key.ends_with(".age");
    let zstd = !raw && (key.ends_with(".zst") || key.ends_with(".zst.age"));
    // No record to check against (an empty sha256 means unknown): the stored size comes
    // from HEAD; decryption and decompression still check their own integrity.
    let rec = ObjectRecord {
        key: key.to_string(),
        stored_key: key.to_string(),
        size: 0,
        stored_size: meta.size,
        sha256: String::new(),
        compression: if zstd { "zstd" } else { "none" }.into(),
        encryption: encrypted.then(|| "age".to_string()),
    };
    let res = pipeline::download(
        loc.store.as_ref(),
        &path,
        &rec,
        Sink::Writer(w),
        None,
        loc.encryption.as_ref(),
        // `location cat`: any object, with no record to check it against.
        pipeline::Pin::Unverified,
    )
    .await;
    res.map_err(|e| anyhow!(e))
}

/// Remove objects: `key` itself, or everything under it with `recursive`. Objects of the
/// restore points in `protected` are refused unless `force` (use `coffer delete` for those).
pub async fn remove(
    protected: &[RestorePoint],
    loc: &Location,
    key: &str,
    recursive: bool,
    force: bool,
) -> Result<Vec<String>> {
    let key = key.trim_matches('/');
    let targets: Vec<String> = if recursive {
        list(loc, Some(key))
            .await?
            .into_iter()
            .map(|l| l.key)
            .collect()
    } else {
        vec![key.to_string()]
    };
    if targets.is_empty() {
        bail!("nothing under {key} in Profile {}", loc.profile);
    }
    if !force {
        for rp in protected {
            if rp.spec.profile == loc.profile
                && targets
                    .iter()
                    .any(|t| t.starts_with(&format!("{}/", rp.spec.prefix)))
            {
                bail!(
                    "{key} holds objects of RestorePoint {}; remove it with `coffer delete {}`, or pass --force to remove the objects anyway (the RestorePoint then fails verification)",
                    rp.metadata.name,
                    rp.metadata.name
                );
            }
        }
    }
    let mut removed = Vec::new();
    for t in targets {
        match loc.store.delete(&Path::from(t.as_str())).await {
            Ok(()) => removed.push(t),
            Err(object_store::Error::NotFound { .. }) if !recursive => {
                bail!("{t} not found in Profile {}", loc.profile)
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {t}")),
        }
    }
    if recursive {
        loc.abort_open_uploads(key).await?;
    }
    Ok(removed)
}
