//! The data path. Upload: source stream -> zstd -> sha256 -> multipart upload. Download:
//! object -> sha256 -> zstd -d -> sink stream, verified against the restore point's record.
//! Memory is bounded by the read chunk plus the upload parts in flight, whatever the size.

use super::LocationBinding;
use crate::cap::streams::{flush, stream_error_text, write_all};
use crate::model::ObjectRecord;
use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    fn add(&self, n: usize) {
        self.transfer.fetch_add(n as u64, Ordering::Relaxed);
        self.action.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn store_err(what: &str, e: object_store::Error) -> String {
    format!("{what}: {e}")
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

/// Upload everything `src` yields to `stored` (a key under the binding's prefix). An upload
/// that fails is aborted, leaving no object behind.
pub async fn upload(
    mut src: DynInputStream,
    binding: &LocationBinding,
    key: &str,
    zstd_level: Option<i32>,
    counters: &Counters,
) -> PipeResult<ObjectRecord> {
    let stored = super::stored_key(key, zstd_level.is_some());
    let path = binding.path(&stored)?;
    let upload = binding
        .store
        .put_multipart(&path)
        .await
        .map_err(|e| store_err("starting the upload", e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut comp = Compressor::new(zstd_level)?;
    let mut sha = Sha256::new();
    let (mut size, mut stored_size) = (0u64, 0u64);
    let copied: PipeResult<()> = async {
        loop {
            src.ready().await;
            let chunk = match src.read(READ_CHUNK) {
                Ok(c) if c.is_empty() => continue,
                Ok(c) => c,
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the source: {}", stream_error_text(&e))),
            };
            size += chunk.len() as u64;
            counters.add(chunk.len());
            let out = comp.push(chunk)?;
            if !out.is_empty() {
                sha.update(&out);
                stored_size += out.len() as u64;
                writer.write(&out);
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| store_err("uploading", e))?;
            }
        }
        let tail = std::mem::replace(&mut comp, Compressor(None)).finish()?;
        sha.update(&tail);
        stored_size += tail.len() as u64;
        writer.write(&tail);
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        if let Err(abort) = writer.abort().await {
            tracing::warn!(key, error = %abort, "aborting an upload failed; its parts may remain");
        }
        return Err(e);
    }
    writer
        .finish()
        .await
        .map_err(|e| store_err("completing the upload", e))?;
    Ok(ObjectRecord {
        key: key.to_string(),
        stored_key: stored,
        size,
        stored_size,
        sha256: hex::encode(sha.finalize()),
        compression: if zstd_level.is_some() { "zstd" } else { "none" }.to_string(),
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
}

/// Read `rec`'s object, check its size and sha256, and feed the decompressed bytes to `sink`.
/// A mismatch is reported after the last byte; callers that must not act on bad data verify
/// first with [`Sink::ChecksumOnly`].
pub async fn download(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    rec: &ObjectRecord,
    mut sink: Sink<'_>,
    counters: Option<&Counters>,
) -> PipeResult<u64> {
    let got = store
        .get(path)
        .await
        .map_err(|e| store_err(&format!("reading {}", rec.stored_key), e))?;
    let mut stream = got.into_stream();
    let decode = !matches!(sink, Sink::ChecksumOnly);
    let mut dec = Decompressor::new(decode && rec.compression == "zstd")?;
    let mut sha = Sha256::new();
    let (mut stored, mut size) = (0u64, 0u64);
    let mut out = |bytes: Bytes, sink: &mut Sink<'_>| -> PipeResult<Option<Bytes>> {
        size += bytes.len() as u64;
        if let Some(c) = counters {
            c.add(bytes.len());
        }
        match sink {
            Sink::Stream(_) => Ok(Some(bytes)),
            Sink::ChecksumOnly => Ok(None),
            Sink::Buffer(buf, cap) => {
                if buf.len() as u64 + bytes.len() as u64 > *cap {
                    return Err(format!(
                        "{} is larger than the {cap} bytes asked for",
                        rec.key
                    ));
                }
                buf.extend_from_slice(&bytes);
                Ok(None)
            }
        }
    };
    // A decode failure is reported after the whole object is hashed: a checksum mismatch,
    // when there is one, is the cause worth naming.
    let mut decode_error: Option<String> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| store_err(&format!("reading {}", rec.stored_key), e))?;
        sha.update(&chunk);
        stored += chunk.len() as u64;
        if decode_error.is_some() || !decode {
            continue;
        }
        match dec.push(chunk) {
            Ok(plain) => {
                if let Some(b) = out(plain, &mut sink)? {
                    feed(&mut sink, b).await?;
                }
            }
            Err(e) => decode_error = Some(e),
        }
    }
    if decode_error.is_none() && decode {
        match dec.finish() {
            Ok(tail) => {
                if let Some(b) = out(tail, &mut sink)? {
                    feed(&mut sink, b).await?;
                }
            }
            Err(e) => decode_error = Some(e),
        }
    }
    let digest = hex::encode(sha.finalize());
    if stored != rec.stored_size || digest != rec.sha256 {
        return Err(format!(
            "checksum mismatch in {}: expected {} bytes with sha256 {}, found {stored} bytes with sha256 {digest}; the stored object is corrupt or was changed",
            rec.stored_key, rec.stored_size, rec.sha256
        ));
    }
    if let Some(e) = decode_error {
        return Err(format!("{}: {e}", rec.stored_key));
    }
    if decode && size != rec.size {
        return Err(format!(
            "{}: decompressed to {size} bytes, the record says {}",
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
