//! `location-writer.create`: an object the plugin writes itself. The plugin gets the write
//! end of a pipe; the read end is an ordinary `put` source, so the bytes take the same
//! path as every upload (zstd, age, sha256, multipart, recorded for the manifest) and the
//! same checks come first.

use super::Locations;
use crate::cap::{CapView, HostResult};
use crate::wit::abi::location::{PutOptions, Store, Transfer};
use crate::wit::abi::location_writer::Host;
use std::time::Instant;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, OutputStream, Pollable, StreamResult};

/// Bytes in flight between the plugin's writes and the upload: a plugin that writes faster
/// than the store takes waits (its stream's `check-write` says how much fits).
const PIPE: usize = 1 << 20;

impl Host for CapView<'_, Locations> {
    async fn create(
        &mut self,
        target: Resource<Store>,
        key: String,
        opts: PutOptions,
    ) -> HostResult<(Resource<DynOutputStream>, Resource<Transfer>)> {
        let started = Instant::now();
        let (name, bound) = self.bound(&target)?;
        let checked = self.writable(&name, &bound, &key);
        self.scope
            .audit("location.create", &key, "stream", started, &checked, 0);
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let (read, write) = tokio::io::duplex(PIPE);
        let src: DynInputStream = Box::new(AsyncReadStream::new(read));
        let transfer = self.upload(bound, key, src, opts, None)?;
        let sink: DynOutputStream = Box::new(Closing(AsyncWriteStream::new(PIPE, write)));
        Ok(Ok((self.table.push(sink)?, transfer)))
    }
}

/// The plugin's end of the pipe. Dropping it is closing it: what was written but not yet
/// flushed still reaches the upload before the end of the object (wasi's own stream would
/// drop those bytes, and the object would end early yet look complete).
struct Closing(AsyncWriteStream);

#[async_trait::async_trait]
impl OutputStream for Closing {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.0.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.0.check_write()
    }

    async fn cancel(&mut self) {
        // An upload that failed makes these fail at once; one that stalls ends with the
        // action (its transfer is cancelled, which closes the other end).
        if self.0.flush().is_ok() {
            let _ = self.0.write_ready().await;
        }
        self.0.cancel().await;
    }
}

#[async_trait::async_trait]
impl Pollable for Closing {
    async fn ready(&mut self) {
        self.0.ready().await
    }
}
