//! `std::io` adapters for the slow path: small amounts of data the plugin itself reads or
//! writes (a process's short output, a config it feeds a tool, a small object). Bulk data
//! should not pass through the plugin: use `Cmd::stdout_to` / `Cmd::stdin_from`. The
//! exception is data only the plugin can make (a protocol it speaks itself, e.g. over
//! [`crate::net`]): [`ObjectStream`] writes it into the location as it comes, and
//! [`ObjectReader`] reads an object back as it comes.

use crate::bindings::coffer::blueprint0_2_0::{location_reader, location_writer};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::location::{ObjectInfo, PutOptions, Store, Transfer};
use crate::types::Error;

/// Largest read asked of the host at once.
const CHUNK: u64 = 64 << 10;

fn io_error(e: StreamError) -> std::io::Error {
    match e {
        StreamError::Closed => std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stream closed"),
        StreamError::LastOperationFailed(err) => std::io::Error::other(err.to_debug_string()),
    }
}

/// `Read` over a host input stream (e.g. a process's stdout from `Process::take_stdout`).
pub struct StreamReader(pub InputStream);

impl std::io::Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.0.blocking_read((buf.len() as u64).min(CHUNK)) {
            Ok(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            Err(StreamError::Closed) => Ok(0),
            Err(e) => Err(io_error(e)),
        }
    }
}

/// `Write` over a host output stream (e.g. a process's stdin from `Process::take_stdin`).
/// Drop it (or the stream) to close the process's input.
pub struct StreamWriter(pub OutputStream);

impl std::io::Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The host accepts at most 4096 bytes per blocking write.
        let n = buf.len().min(4096);
        self.0
            .blocking_write_and_flush(&buf[..n])
            .map_err(io_error)?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.blocking_flush().map_err(io_error)
    }
}

/// `Write` that collects a small object and stores it on `finish` (through `put_bytes`, so
/// the host's cap on captured output applies).
pub struct ObjectWriter<'a> {
    store: &'a Store,
    key: String,
    opts: PutOptions,
    buf: Vec<u8>,
}

impl<'a> ObjectWriter<'a> {
    /// A writer for object `key` of `store`, stored with `opts` on `finish`.
    pub fn new(store: &'a Store, key: impl Into<String>, opts: PutOptions) -> Self {
        ObjectWriter {
            store,
            key: key.into(),
            opts,
            buf: Vec::new(),
        }
    }
    /// Store what was written.
    pub fn finish(self) -> Result<ObjectInfo, Error> {
        self.store.put_bytes(&self.key, &self.buf, &self.opts)
    }
}

impl std::io::Write for ObjectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An object the plugin writes as it goes (`location-writer.create`): the bytes take the
/// host's upload path (zstd, age, sha256, multipart) and are never all in the plugin's
/// memory at once. Call [`finish`](Self::finish) for the object's record: an `ObjectStream`
/// dropped unfinished aborts its upload and no object is recorded.
///
/// ```ignore
/// use std::io::Write;
/// let mut out = ObjectStream::create(&store, "topic/0/000000.batches", &opts)?;
/// out.write_all(&bytes)?;
/// let info = out.finish()?;
/// ```
pub struct ObjectStream {
    // Dropped first: an unfinished object's upload is cancelled before its stream closes.
    transfer: Option<Transfer>,
    stream: Option<OutputStream>,
    key: String,
}

impl ObjectStream {
    /// Start object `key` of `store`.
    pub fn create(store: &Store, key: &str, opts: &PutOptions) -> Result<Self, Error> {
        let (stream, transfer) = location_writer::create(store, key, opts)?;
        Ok(ObjectStream {
            transfer: Some(transfer),
            stream: Some(stream),
            key: key.to_string(),
        })
    }

    /// Bytes the host has taken so far.
    pub fn bytes(&self) -> u64 {
        self.transfer.as_ref().map_or(0, |t| t.bytes())
    }

    /// End the object and wait for its upload: its record, or why it failed.
    pub fn finish(mut self) -> Result<ObjectInfo, Error> {
        if let Some(s) = self.stream.take() {
            // Closing the stream is the object's end; a failed upload says why below.
            let _ = s.blocking_flush();
        }
        match self.transfer.take() {
            Some(t) => t.wait(),
            None => Err(Error::Io(format!("{}: already finished", self.key))),
        }
    }
}

impl std::io::Write for ObjectStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(stream) = &self.stream else {
            return Err(std::io::Error::other("the object stream is closed"));
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let ended = |e| {
            std::io::Error::other(format!(
                "writing {}: the upload ended ({}); finish() says why",
                self.key,
                io_error(e)
            ))
        };
        loop {
            let permit = stream.check_write().map_err(ended)?;
            if permit == 0 {
                stream.subscribe().block();
                continue;
            }
            let n = buf.len().min(permit as usize);
            stream.write(&buf[..n]).map_err(ended)?;
            return Ok(n);
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.stream {
            Some(s) => s.blocking_flush().map_err(io_error),
            None => Ok(()),
        }
    }
}

/// An object read as it comes from the store (`location-reader.open`): decrypted and
/// decompressed by the host, never all in the plugin's memory at once. The bytes are
/// checked against the object's sha256 only at its end: call [`finish`](Self::finish)
/// after reading to the end, and act on what was read (or undo it) by what it says.
///
/// ```ignore
/// use std::io::Read;
/// let mut r = ObjectReader::open(&store, "topic/0/000000.batches")?;
/// let mut head = [0u8; 12];
/// r.read_exact(&mut head)?;
/// // ... read the rest ...
/// r.finish()?;
/// ```
pub struct ObjectReader {
    // Dropped first: an unfinished read stops the download before the transfer goes.
    stream: Option<StreamReader>,
    transfer: Option<Transfer>,
    key: String,
}

impl ObjectReader {
    /// Start reading object `key` of `store`.
    pub fn open(store: &Store, key: &str) -> Result<Self, Error> {
        let (stream, transfer) = location_reader::open(store, key)?;
        Ok(ObjectReader {
            stream: Some(StreamReader(stream)),
            transfer: Some(transfer),
            key: key.to_string(),
        })
    }

    /// Wait for the download's end: whether the object arrived whole and matching its
    /// sha256. Call it after reading to the end.
    pub fn finish(mut self) -> Result<ObjectInfo, Error> {
        self.stream = None;
        match self.transfer.take() {
            Some(t) => t.wait(),
            None => Err(Error::Io(format!("{}: already finished", self.key))),
        }
    }
}

impl std::io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stream {
            Some(s) => s.read(buf),
            None => Ok(0),
        }
    }
}
