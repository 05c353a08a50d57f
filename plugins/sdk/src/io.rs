//! `std::io` adapters for the slow path: small amounts of data the plugin itself reads or
//! writes (a process's short output, a config it feeds a tool, a small object). Bulk data
//! should not pass through the plugin: use `Cmd::stdout_to` / `Cmd::stdin_from`.

use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::location::{ObjectInfo, PutOptions, Store};
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
