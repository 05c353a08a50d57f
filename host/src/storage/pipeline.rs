//! The data path. Upload: source stream -> zstd -> age -> sha256 -> multipart upload.
//! Download: object -> sha256 -> age -d -> zstd -d -> sink stream, verified against the
//! restore point's record. Memory is bounded by the read chunk plus the upload parts in
//! flight, whatever the size.

use super::Prefix;
use super::crypt::{Encryption, Sealer, decrypt_error_text};
use super::streams::{flush, stream_error_text, write_all};
use crate::model::ObjectRecord;
use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, StreamError};

/// Largest read from a source stream.
const READ_CHUNK: usize = 1 << 20;
/// Multipart part size, and how many parts may be in flight.
pub const PART_SIZE: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 2;

/// A failure of the data path, as the text the plugin and the user see.
pub type PipeResult<T> = Result<T, String>;

/// Counters a transfer updates as bytes move (uncompressed bytes).
pub struct Counters {
    pub transfer: Arc<AtomicU64>,
    pub action: Arc<AtomicU64>,
}

impl Counters {
    pub fn add(&self, n: usize) {
        self.transfer.fetch_add(n as u64, Ordering::Relaxed);
        self.action.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn store_err(what: &str, e: object_store::Error) -> String {
    format!("{what}: {}", super::store_error(&e))
}

/// Compressor that hands back what it produced after each input chunk.
struct Compressor(Option<zstd::stream::write::Encoder<'static, Vec<u8>>>);

impl Compressor {
    fn new(level: Option<i32>) -> PipeResult<Compressor> {
        match level {
            None => Ok(Compressor(None)),
            Some(l) => {
                let mut e = zstd::stream::write::Encoder::new(Vec::with_capacity(READ_CHUNK), l)
                    .map_err(|e| format!("zstd: {e}"))?;
                e.include_checksum(true).map_err(|e| format!("zstd: {e}"))?;
                Ok(Compressor(Some(e)))
            }
        }
    }
    fn push(&mut self, input: Bytes) -> PipeResult<Bytes> {
        match &mut self.0 {
            None => Ok(input),
            Some(e) => {
                e.write_all(&input).map_err(|e| format!("zstd: {e}"))?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
        }
    }
    fn finish(self) -> PipeResult<Bytes> {
        match self.0 {
            None => Ok(Bytes::new()),
            Some(e) => e
                .finish()
                .map(Bytes::from)
                .map_err(|e| format!("zstd: {e}")),
        }
    }
}

/// Upload everything `src` yields as `key` under `prefix` (stored under the key with the
/// suffixes of its encodings). An upload that fails, or is cancelled through `cancel`, is
/// aborted, leaving no object behind; it returns only once the store has nothing of it in
/// flight (cancellation is checked between steps, never inside one, so no store call is
/// left running after it returns).
pub async fn upload(
    src: DynInputStream,
    prefix: &Prefix,
    key: &str,
    zstd_level: Option<i32>,
    counters: &Counters,
    cancel: &CancellationToken,
) -> PipeResult<ObjectRecord> {
    let stored = super::keys::stored_key(key, zstd_level.is_some(), prefix.encryption.is_some());
    let path = prefix.path(&stored)?;
    let upload = prefix
        .store
        .put_multipart(&path)
        .await
        .map_err(|e| store_err("starting the upload", e))?;
    let sealer = prefix.encryption.as_ref().map(|e| e.sealer()).transpose()?;
    let written = pump(src, upload, zstd_level, sealer, counters, cancel).await?;
    Ok(written.record(key, stored, zstd_level, prefix.encryption.is_some()))
}

/// What [`pump`] wrote: bytes read, bytes stored, and the stored bytes' sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub stored_size: u64,
    pub sha256: String,
}

impl Written {
    /// The record of the object written as `stored` for `key`.
    pub fn record(
        self,
        key: &str,
        stored: String,
        zstd_level: Option<i32>,
        encrypted: bool,
    ) -> ObjectRecord {
        ObjectRecord {
            key: key.to_string(),
            stored_key: stored,
            size: self.size,
            stored_size: self.stored_size,
            sha256: self.sha256,
            compression: if zstd_level.is_some() { "zstd" } else { "none" }.to_string(),
            encryption: encrypted.then(|| "age".to_string()),
        }
    }
}

/// The data path itself: `src` -> zstd -> age (`sealer`) -> sha256 -> the parts of
/// `upload`, completed at the end; aborted on failure or cancellation. The store behind
/// `upload` may be a real one or a mover's pre-signed parts.
pub async fn pump(
    mut src: DynInputStream,
    upload: Box<dyn object_store::MultipartUpload>,
    zstd_level: Option<i32>,
    mut sealer: Option<Sealer>,
    counters: &Counters,
    cancel: &CancellationToken,
) -> PipeResult<Written> {
    const CANCELLED: &str = "cancelled: the action ended before the upload finished";
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut comp = Compressor::new(zstd_level)?;
    let mut sha = Sha256::new();
    let (mut size, mut stored_size) = (0u64, 0u64);
    let copied: PipeResult<()> = async {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(CANCELLED.to_string()),
                _ = src.ready() => {}
            }
            let chunk = match src.read(READ_CHUNK) {
                Ok(c) if c.is_empty() => continue,
                Ok(c) => c,
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the source: {}", stream_error_text(&e))),
            };
            size += chunk.len() as u64;
            counters.add(chunk.len());
            let mut out = comp.push(chunk)?;
            if let Some(s) = &mut sealer
                && !out.is_empty()
            {
                out = s.push(&out)?;
            }
            if !out.is_empty() {
                sha.update(&out);
                stored_size += out.len() as u64;
                writer.write(&out);
                // Dropping this wait on cancellation leaves the parts in flight to the
                // writer, whose abort below ends them.
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(CANCELLED.to_string()),
                    r = writer.wait_for_capacity(PARTS_IN_FLIGHT) => {
                        r.map_err(|e| store_err("uploading", e))?
                    }
                }
            }
        }
        if cancel.is_cancelled() {
            return Err(CANCELLED.to_string());
        }
        let mut tail = std::mem::replace(&mut comp, Compressor(None)).finish()?;
        if let Some(mut s) = sealer.take() {
            let mut sealed = s.push(&tail)?.to_vec();
            sealed.extend_from_slice(&s.finish()?);
            tail = Bytes::from(sealed);
        }
        sha.update(&tail);
        stored_size += tail.len() as u64;
        writer.write(&tail);
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        if let Err(abort) = writer.abort().await {
            tracing::warn!(error = %abort, "aborting an upload failed; its parts may remain");
        }
        return Err(e);
    }
    writer
        .finish()
        .await
        .map_err(|e| store_err("completing the upload", e))?;
    Ok(Written {
        size,
        stored_size,
        sha256: hex::encode(sha.finalize()),
    })
}

/// Decompressor that hands back what it produced after each input chunk.
struct Decompressor(Option<zstd::stream::write::Decoder<'static, Vec<u8>>>);

impl Decompressor {
    fn new(zstd: bool) -> PipeResult<Decompressor> {
        if !zstd {
            return Ok(Decompressor(None));
        }
        zstd::stream::write::Decoder::new(Vec::with_capacity(READ_CHUNK))
            .map(|d| Decompressor(Some(d)))
            .map_err(|e| format!("zstd: {e}"))
    }
    fn push(&mut self, input: Bytes) -> PipeResult<Bytes> {
        match &mut self.0 {
            None => Ok(input),
            Some(d) => {
                d.write_all(&input)
                    .map_err(|e| format!("zstd: the object is not valid zstd data: {e}"))?;
                Ok(Bytes::from(std::mem::take(d.get_mut())))
            }
        }
    }
    fn finish(&mut self) -> PipeResult<Bytes> {
        match &mut self.0 {
            None => Ok(Bytes::new()),
            Some(d) => {
                d.flush()
                    .map_err(|e| format!("zstd: the object ends early: {e}"))?;
                Ok(Bytes::from(std::mem::take(d.get_mut())))
            }
        }
    }
}

/// Where decompressed bytes go.
pub enum Sink<'a> {
    /// A guest-visible stream (e.g. a process's stdin).
    Stream(&'a mut DynOutputStream),
    /// Nowhere, without decompressing: the stored bytes' size and sha256 only (what the
    /// writer recorded, so it proves the object is unchanged; much cheaper).
    ChecksumOnly,
    /// Memory, up to a cap.
    Buffer(&'a mut Vec<u8>, u64),
    /// Decoded end to end (decrypted, decompressed, sizes checked), then dropped: `verify`.
    Discard,
    /// A blocking writer (e.g. stdout for `coffer location cat`).
    Writer(&'a mut (dyn Write + Send)),
}

/// Read `rec`'s object, check its size and sha256, and feed the plaintext to `sink`
/// (decrypted with `decrypt`'s identity when the object is encrypted). A mismatch is
/// reported after the last byte; callers that must not act on bad data verify first with
/// [`Sink::ChecksumOnly`].
/// Which object a read may get.
pub enum Pin<'a> {
    /// Whatever is there now; it is checked against its record as it streams.
    Any,
    /// No record to check against (`coffer location cat`): the only reads an empty sha256
    /// is allowed for.
    Unverified,
    /// Note which version was read (a restore's verification pass).
    Record(&'a std::sync::Mutex<Option<ObjectVersion>>),
    /// Exactly the version read before (a restore reads what it verified, never an object
    /// swapped in between).
    Require(&'a ObjectVersion),
}

impl<'a> From<Option<&'a ObjectVersion>> for Pin<'a> {
    /// A verified version is required; without one, whatever is there (checked as it streams).
    fn from(verified: Option<&'a ObjectVersion>) -> Self {
        verified.map_or(Pin::Any, Pin::Require)
    }
}

/// An object's identity in the store: its ETag and, on versioned buckets, its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub async fn download(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    rec: &ObjectRecord,
    mut sink: Sink<'_>,
    counters: Option<&Counters>,
    decrypt: Option<&Encryption>,
    pin: Pin<'_>,
) -> PipeResult<u64> {
    if rec.sha256.is_empty() && !matches!(pin, Pin::Unverified) {
        return Err(format!(
            "{} has no recorded sha256; it cannot be read verified",
            rec.stored_key
        ));
    }
    let mut opts = object_store::GetOptions::default();
    if let Pin::Require(v) = &pin {
        opts.if_match = v.e_tag.clone();
        opts.version = v.version.clone();
    }
    let got = store.get_opts(path, opts).await.map_err(|e| match e {
        object_store::Error::Precondition { .. } => format!(
            "{} changed after it was verified; nothing more was read from it",
            rec.stored_key
        ),
        e => store_err(&format!("reading {}", rec.stored_key), e),
    })?;
    if let Pin::Record(slot) = &pin {
        *slot.lock().unwrap() = Some(ObjectVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        });
    }
    let decode = !matches!(sink, Sink::ChecksumOnly);
    let encrypted = rec.encryption.as_deref() == Some("age");
    let identities = match (decode && encrypted, decrypt) {
        (false, _) => None,
        (true, None) => {
            return Err(format!(
                "{} is encrypted with age, but its Profile has no spec.encryption to decrypt it with",
                rec.stored_key
            ));
        }
        (true, Some(e)) => Some((e.identities()?, e.profile.clone())),
    };
    // Every stored byte is hashed as it leaves the network, whoever reads it next.
    let hashed = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let h = hashed.clone();
    let mut raw = got
        .into_stream()
        .inspect_ok(move |chunk| {
            let mut h = h.lock().unwrap();
            h.0.update(chunk);
            h.1 += chunk.len() as u64;
        })
        .map_err(std::io::Error::other)
        .into_async_read();
    let mut dec = Decompressor::new(decode && rec.compression == "zstd")?;
    let mut size = 0u64;
    // A decode failure is reported after the whole object is hashed: a checksum mismatch,
    // when there is one, is the cause worth naming.
    let mut decode_error: Option<String> = None;
    if decode {
        let decoded: PipeResult<()> = async {
            let mut plain: Box<dyn AsyncRead + Unpin + Send + '_> = match &identities {
                None => Box::new(&mut raw),
                Some((ids, profile)) => {
                    let d = age::Decryptor::new_async_buffered(&mut raw)
                        .await
                        .map_err(|e| decrypt_error_text(profile, &e))?;
                    Box::new(
                        d.decrypt_async(ids.iter().map(|i| i as &dyn age::Identity))
                            .map_err(|e| decrypt_error_text(profile, &e))?,
                    )
                }
            };
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let n = plain.read(&mut buf).await.map_err(|e| {
                    if encrypted {
                        format!("age: cannot decrypt: {e}")
                    } else {
                        format!("reading: {e}")
                    }
                })?;
                let chunk = if n == 0 {
                    dec.finish()?
                } else {
                    dec.push(Bytes::copy_from_slice(&buf[..n]))?
                };
                size += chunk.len() as u64;
                if let Some(c) = counters {
                    c.add(chunk.len());
                }
                deliver(&mut sink, chunk, rec).await?;
                if n == 0 {
                    return Ok(());
                }
            }
        }
        .await;
        decode_error = decoded.err();
    }
    // Read what is left (all of it when only checking), so the checksum covers every byte.
    let drained = futures::io::copy(&mut raw, &mut futures::io::sink()).await;
    if let Err(e) = drained {
        return Err(format!("reading {}: {e}", rec.stored_key));
    }
    let (sha, stored) = {
        let mut h = hashed.lock().unwrap();
        (std::mem::take(&mut h.0), h.1)
    };
    let digest = hex::encode(sha.finalize());
    // An empty sha256 is an object read without a record (`coffer location cat`, Pin::Unverified).
    let recorded = !rec.sha256.is_empty();
    if recorded && (stored != rec.stored_size || digest != rec.sha256) {
        return Err(format!(
            "checksum mismatch in {}: expected {} bytes with sha256 {}, found {stored} bytes with sha256 {digest}; the stored object is corrupt or was changed",
            rec.stored_key, rec.stored_size, rec.sha256
        ));
    }
    if let Some(e) = decode_error {
        return Err(format!("{}: {e}", rec.stored_key));
    }
    if recorded && decode && size != rec.size {
        return Err(format!(
            "{}: decoded to {size} bytes, the record says {}",
            rec.stored_key, rec.size
        ));
    }
    if let Sink::Stream(s) = &mut sink {
        flush(s)
            .await
            .map_err(|e| format!("writing to the process: {}", stream_error_text(&e)))?;
    }
    Ok(size)
}

/// Whether the Profile's identity can open an encrypted object, from its header alone:
/// a restore checks this before the plugin touches anything.
pub async fn check_identity(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    rec: &ObjectRecord,
    decrypt: Option<&Encryption>,
) -> PipeResult<()> {
    let Some(enc) = decrypt else {
        return Err(format!(
            "{} is encrypted with age, but its Profile has no spec.encryption to decrypt it with",
            rec.stored_key
        ));
    };
    let ids = enc.identities()?;
    // An age header is a few hundred bytes per recipient.
    let end = rec.stored_size.min(64 << 10);
    let head = store
        .get_range(path, 0..end)
        .await
        .map_err(|e| store_err(&format!("reading {}", rec.stored_key), e))?;
    let d = age::Decryptor::new_buffered(&head[..]).map_err(|e| {
        format!(
            "{}: {}",
            rec.stored_key,
            decrypt_error_text(&enc.profile, &e)
        )
    })?;
    d.decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{}: {}",
                rec.stored_key,
                decrypt_error_text(&enc.profile, &e)
            )
        })
}

/// Hand decoded bytes to the sink.
async fn deliver(sink: &mut Sink<'_>, bytes: Bytes, rec: &ObjectRecord) -> PipeResult<()> {
    match sink {
        Sink::Stream(_) => feed(sink, bytes).await,
        Sink::ChecksumOnly | Sink::Discard => Ok(()),
        Sink::Buffer(buf, cap) => {
            if buf.len() as u64 + bytes.len() as u64 > *cap {
                return Err(format!(
                    "{} is larger than the {cap} bytes asked for",
                    rec.key
                ));
            }
            buf.extend_from_slice(&bytes);
            Ok(())
        }
        Sink::Writer(w) => w
            .write_all(&bytes)
            .map_err(|e| format!("writing {}: {e}", rec.key)),
    }
}

async fn feed(sink: &mut Sink<'_>, b: Bytes) -> PipeResult<()> {
    if let Sink::Stream(s) = sink {
        write_all(s, b).await.map_err(|e| match e {
            StreamError::Closed => {
                "the process closed its input before reading all of it".to_string()
            }
            e => format!("writing to the process: {}", stream_error_text(&e)),
        })?;
    }
    Ok(())
}
