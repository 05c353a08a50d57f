//! Kafka record batches (message format v2) as bytes: split a fetched run of them, read the
//! header fields a backup needs, and rewrite the header of one for a plain producer. The
//! records inside are never decoded and re-encoded (a decoder that keeps headers as a map
//! would lose duplicate header keys); the one exception is renumbering the offsets of an
//! uncompressed batch that compaction left with gaps, which the broker would refuse.

use coffer_plugin_sdk::Error;

const BASE_OFFSET: usize = 0;
const LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const COUNT: usize = 57;
pub const HEADER: usize = 61;

const COMPRESSION: u16 = 0b111;
const TRANSACTIONAL: u16 = 1 << 4;
const CONTROL: u16 = 1 << 5;
const DELETE_HORIZON: u16 = 1 << 6;

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}

/// One batch, whole.
#[derive(Clone, Copy)]
pub struct Batch<'a>(pub &'a [u8]);

impl Batch<'_> {
    pub fn base_offset(&self) -> i64 {
        i64_at(self.0, BASE_OFFSET)
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i32_at(self.0, LAST_OFFSET_DELTA) as i64
    }
    /// The first record's timestamp (ms since the epoch; -1 when unknown).
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.0, BASE_TIMESTAMP)
    }
    pub fn count(&self) -> i32 {
        i32_at(self.0, COUNT)
    }
    fn attributes(&self) -> u16 {
        u16_at(self.0, ATTRIBUTES)
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL != 0
    }
    pub fn compressed(&self) -> bool {
        self.attributes() & COMPRESSION != 0
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.0, PRODUCER_ID)
    }
    /// Whether the offsets of its records have gaps (compaction removed some).
    pub fn gapped(&self) -> bool {
        self.last_offset() - self.base_offset() + 1 != self.count() as i64
    }
    /// For a control batch: whether it is an abort marker (its record's key is
    /// `version: i16, type: i16`, type 0 = abort).
    pub fn is_abort_marker(&self) -> bool {
        let Some(rec) = records(self.0).next() else {
            return false;
        };
        rec.key.is_some_and(|k| k.len() >= 4 && u16_at(k, 2) == 0)
    }
    /// The offset of each record (base + its delta): uncompressed batches only.
    pub fn offsets(&self) -> Vec<i64> {
        let base = self.base_offset();
        records(self.0).map(|r| base + r.offset_delta).collect()
    }
}

/// The largest batch a restore reads (Kafka's own limit, `message.max.bytes`, is about
/// 1 MiB unless raised).
const MAX_BATCH: usize = 128 << 20;

/// Read the next batch of a stream of whole batches (a backup's segment) into `buf`, its
/// CRC checked: false at the stream's end, an error if it ends inside a batch.
pub fn read_next(r: &mut impl std::io::Read, buf: &mut Vec<u8>, what: &str) -> Result<bool, Error> {
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            Error::Io(format!("{what} ends inside a record batch"))
        }
        _ => Error::Io(format!("reading {what}: {e}")),
    };
    buf.clear();
    buf.resize(12, 0);
    let mut got = 0;
    while got < 12 {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(failed(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let len = i32_at(buf, LENGTH);
    if len < (HEADER - 12) as i32 || len as usize > MAX_BATCH {
        return Err(Error::Io(format!("{what}: a record batch of {len} bytes")));
    }
    buf.resize(12 + len as usize, 0);
    r.read_exact(&mut buf[12..]).map_err(failed)?;
    if split(buf)?.len() != 1 {
        return Err(Error::Io(format!(
            "{what}: a record batch that does not parse"
        )));
    }
    Ok(true)
}

/// The complete batches at the start of `data`; a batch cut off at the end (a fetch's
/// size limit) is left out, as Kafka clients do.
pub fn split(data: &[u8]) -> Result<Vec<Batch<'_>>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while data.len() - at >= HEADER {
        let len = i32_at(data, at + LENGTH);
        if len < (HEADER - 12) as i32 {
            return Err(Error::Io(format!("a record batch of {len} bytes")));
        }
        let end = at + 12 + len as usize;
        if end > data.len() {
            break;
        }
        let magic = data[at + MAGIC];
        if magic != 2 {
            return Err(Error::Io(format!(
                "a record batch in message format v{magic}: only v2 (Kafka 0.11 and later) is supported"
            )));
        }
        let b = &data[at..end];
        let crc = u32::from_be_bytes(b[CRC..CRC + 4].try_into().unwrap());
        if crc32c::crc32c(&b[ATTRIBUTES..]) != crc {
            return Err(Error::Io(format!(
                "the record batch at offset {} fails its CRC",
                i64_at(b, 0)
            )));
        }
        out.push(Batch(b));
        at = end;
    }
    Ok(out)
}

/// `batch` as a plain (non-idempotent, non-transactional) producer would send it: offsets
/// from 0, no producer id, epoch or sequence, the CRC recomputed. Records keep their keys,
/// values, headers and timestamps byte for byte. A batch with gaps in its offsets (left by
/// compaction) gets them renumbered 0..n, as the broker accepts only contiguous ones, and
/// is sent uncompressed; then the old offset of each record comes back too.
pub fn for_producer(batch: Batch<'_>) -> Result<(Vec<u8>, Option<Vec<i64>>), Error> {
    let (mut b, old) = if batch.gapped() {
        let plain;
        let batch = if batch.compressed() {
            plain = decompressed(batch)?;
            Batch(&plain)
        } else {
            batch
        };
        (renumbered(batch)?, Some(batch.offsets()))
    } else {
        (batch.0.to_vec(), None)
    };
    b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&0i64.to_be_bytes());
    b[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    let attributes = u16_at(&b, ATTRIBUTES) & !(TRANSACTIONAL | DELETE_HORIZON);
    b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok((b, old))
}

/// A compressed batch as the same batch uncompressed (its CRC left for the caller).
fn decompressed(batch: Batch<'_>) -> Result<Vec<u8>, Error> {
    use kafka_protocol::compression::{Decompressor, Gzip, Snappy};
    use std::io::Read;
    let at = batch.base_offset();
    let failed = |e: &dyn std::fmt::Display| {
        Error::Io(format!(
            "the compressed batch at offset {at} does not decompress: {e}"
        ))
    };
    let data = &batch.0[HEADER..];
    let whole = |b: &mut bytes::Bytes| Ok(b.to_vec());
    let mut records = Vec::new();
    match batch.attributes() & COMPRESSION {
        1 => {
            records = Gzip::decompress(&mut bytes::Bytes::copy_from_slice(data), whole)
                .map_err(|e| failed(&e))?
        }
        2 => {
            records = Snappy::decompress(&mut bytes::Bytes::copy_from_slice(data), whole)
                .map_err(|e| failed(&e))?
        }
        3 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .take(MAX_BATCH as u64 + 1)
                .read_to_end(&mut records)
                .map_err(|e| failed(&e))?;
        }
        4 => {
            // One zstd frame per batch as Kafka writes them, but any number is valid.
            let mut src = data;
            while !src.is_empty() && records.len() <= MAX_BATCH {
                ruzstd::decoding::StreamingDecoder::new(&mut src)
                    .map_err(|e| failed(&e))?
                    .take((MAX_BATCH + 1 - records.len()) as u64)
                    .read_to_end(&mut records)
                    .map_err(|e| failed(&e))?;
            }
        }
        codec => return Err(failed(&format!("compression codec {codec} is unknown"))),
    }
    if records.len() > MAX_BATCH {
        return Err(failed(&format!("it holds more than {MAX_BATCH} bytes")));
    }
    let mut out = batch.0[..HEADER].to_vec();
    let attributes = batch.attributes() & !COMPRESSION;
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&records);
    let len = (out.len() - 12) as i32;
    out[LENGTH..LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// An uncompressed batch with its records' offset deltas made 0..n.
fn renumbered(batch: Batch<'_>) -> Result<Vec<u8>, Error> {
    let mut out = batch.0[..HEADER].to_vec();
    let mut n = 0i64;
    for r in records(batch.0) {
        let mut body = Vec::with_capacity(r.raw.len() + 4);
        body.push(r.attributes);
        put_varint(&mut body, r.timestamp_delta);
        put_varint(&mut body, n);
        body.extend_from_slice(r.rest);
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
        n += 1;
    }
    if n != batch.count() as i64 {
        return Err(Error::Io(format!(
            "the batch at offset {} holds {n} records, its header says {}",
            batch.base_offset(),
            batch.count()
        )));
    }
    let len = (out.len() - 12) as i32;
    out[LENGTH..LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&((n - 1) as i32).to_be_bytes());
    Ok(out)
}

/// One record of an uncompressed batch, its fields borrowed.
struct RawRecord<'a> {
    raw: &'a [u8],
    attributes: u8,
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&'a [u8]>,
    /// Everything after the offset delta (key, value, headers), as it is.
    rest: &'a [u8],
}

/// The records of an uncompressed batch (stops at the first malformed one).
fn records(batch: &[u8]) -> impl Iterator<Item = RawRecord<'_>> {
    let mut at = HEADER;
    std::iter::from_fn(move || {
        let (len, n) = varint(&batch[at.min(batch.len())..])?;
        let start = at + n;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let raw = batch.get(start..end)?;
        at = end;
        let attributes = *raw.first()?;
        let mut p = 1;
        let (timestamp_delta, n) = varint(&raw[p..])?;
        p += n;
        let (offset_delta, n) = varint(&raw[p..])?;
        p += n;
        let rest = &raw[p..];
        let (klen, n) = varint(rest)?;
        let key = if klen < 0 {
            None
        } else {
            rest.get(n..n + klen as usize)
        };
        Some(RawRecord {
            raw,
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            rest,
        })
    })
}

/// A zigzag varint (Kafka's varint and varlong): its value and length.
fn varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut v: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((v >> 1) as i64) ^ -((v & 1) as i64), i + 1));
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN / 3,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(varint(&b), Some((v, b.len())));
        }
    }
}
