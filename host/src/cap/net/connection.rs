//! Each TCP connection a plugin opens is audited when it closes: its peer, the bytes each
//! way and how long it was open (the connect itself is audited by the gate when it is
//! tried). wasi's `finish-connect` is shadowed in the linker by one that runs wasmtime's own
//! and wraps the two streams it hands the plugin in counters; nothing else of wasi:sockets
//! changes.

use crate::cap::{ActionScope, HasCapabilities};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Host as _};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamResult, TcpSocket,
};
use wasmtime_wasi::sockets::WasiSocketsView;

/// The wasi:sockets/tcp instance wasmtime-wasi 48 links (its WIT package version).
const TCP_INSTANCE: &str = "wasi:sockets/tcp@0.2.12";

type Streams = (Resource<DynInputStream>, Resource<DynOutputStream>);

/// Shadow `[method]tcp-socket.finish-connect` (after WASI is linked).
pub fn link<T: WasiView + HasCapabilities>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(TCP_INSTANCE)?.func_wrap(
        "[method]tcp-socket.finish-connect",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this,): (Resource<TcpSocket>,)|
         -> wasmtime::Result<(Result<Streams, ErrorCode>,)> {
            let scope = store.data_mut().parts().scope.clone();
            let data = store.data_mut();
            let mut sockets = data.sockets();
            let socket = this.rep();
            let (input, output) = match HostTcpSocket::finish_connect(&mut sockets, this) {
                Ok(streams) => streams,
                Err(e) => return Ok((Err(sockets.convert_error_code(e)?),)),
            };
            let peer =
                match HostTcpSocket::remote_address(&mut sockets, Resource::new_borrow(socket)) {
                    Ok(a) => std::net::SocketAddr::from(a).to_string(),
                    Err(_) => "an unknown peer".to_string(),
                };
            let tally = Arc::new(Tally {
                peer,
                opened: Instant::now(),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                scope,
            });
            let table = sockets.table;
            let wrap_in = Counting {
                inner: std::mem::replace(table.get_mut(&input)?, Box::new(Closed)),
                tally: tally.clone(),
            };
            *table.get_mut(&input)? = Box::new(wrap_in);
            let wrap_out = Counting {
                inner: std::mem::replace(table.get_mut(&output)?, Box::new(Closed)),
                tally,
            };
            *table.get_mut(&output)? = Box::new(wrap_out);
            Ok((Ok((input, output)),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One connection's counts, audited when both of its streams are gone.
struct Tally {
    peer: String,
    opened: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    scope: Arc<ActionScope>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let (sent, received) = (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        );
        self.scope.audit::<()>(
            "net",
            &format!("tcp {}", self.peer),
            &format!("sent {sent} B, received {received} B"),
            self.opened,
            &Ok(()),
            sent + received,
        );
    }
}

/// A stream of a connection, counting what passes.
struct Counting<S> {
    inner: S,
    tally: Arc<Tally>,
}

impl Counting<DynInputStream> {
    fn count(&self, n: usize) {
        self.tally.received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Counting<DynOutputStream> {
    fn count(&self, n: usize) {
        self.tally.sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl<S: Pollable + ?Sized> Pollable for Counting<Box<S>> {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[async_trait::async_trait]
impl InputStream for Counting<DynInputStream> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let b = self.inner.read(size)?;
        self.count(b.len());
        Ok(b)
    }
    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        let b = self.inner.blocking_read(size).await?;
        self.count(b.len());
        Ok(b)
    }
    fn skip(&mut self, n: usize) -> StreamResult<usize> {
        let n = self.inner.skip(n)?;
        self.count(n);
        Ok(n)
    }
    async fn blocking_skip(&mut self, n: usize) -> StreamResult<usize> {
        let n = self.inner.blocking_skip(n).await?;
        self.count(n);
        Ok(n)
    }
    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[async_trait::async_trait]
impl OutputStream for Counting<DynOutputStream> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = bytes.len();
        self.inner.write(bytes)?;
        self.count(n);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }
    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = bytes.len();
        self.inner.blocking_write_and_flush(bytes).await?;
        self.count(n);
        Ok(())
    }
    fn write_zeroes(&mut self, n: usize) -> StreamResult<()> {
        self.inner.write_zeroes(n)?;
        self.count(n);
        Ok(())
    }
    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }
    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

/// What a stream's slot holds for the instant its real stream is moved into the wrapper.
struct Closed;

#[async_trait::async_trait]
impl Pollable for Closed {
    async fn ready(&mut self) {}
}

impl InputStream for Closed {
    fn read(&mut self, _: usize) -> StreamResult<Bytes> {
        Err(wasmtime_wasi::p2::StreamError::Closed)
    }
}

#[async_trait::async_trait]
impl OutputStream for Closed {
    fn write(&mut self, _: Bytes) -> StreamResult<()> {
        Err(wasmtime_wasi::p2::StreamError::Closed)
    }
    fn flush(&mut self) -> StreamResult<()> {
        Err(wasmtime_wasi::p2::StreamError::Closed)
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Err(wasmtime_wasi::p2::StreamError::Closed)
    }
}
