//! `location-reader.open`: an object the plugin reads as a stream. The host downloads it
//! exactly as `get-into` does (the same checks, the verified version, decryption,
//! decompression, the sha256 checked at the end) into a pipe whose read end the plugin
//! gets; the transfer says whether the object arrived whole.

use super::Locations;
use crate::cap::{CapView, HostResult};
use crate::wit::abi::location::{HostStore, Store, Transfer};
use crate::wit::abi::location_reader::Host;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// Bytes in flight between the download and the plugin's reads: a plugin that reads slower
/// than the store sends holds the download back.
const PIPE: usize = 1 << 20;

impl Host for CapView<'_, Locations> {
    async fn open(
        &mut self,
        target: Resource<Store>,
        key: String,
    ) -> HostResult<(Resource<DynInputStream>, Resource<Transfer>)> {
        let (read, write) = tokio::io::duplex(PIPE);
        let sink: DynOutputStream = Box::new(AsyncWriteStream::new(PIPE, write));
        let sink = self.table.push(sink)?;
        let store = Resource::new_borrow(target.rep());
        let transfer = match HostStore::get_into(self, store, key, sink).await? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let src: DynInputStream = Box::new(AsyncReadStream::new(read));
        Ok(Ok((self.table.push(src)?, transfer)))
    }
}
