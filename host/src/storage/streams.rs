//! Host-side helpers over wasi:io streams, for copies the host drives itself.

use bytes::Bytes;
use wasmtime_wasi::p2::{DynOutputStream, StreamError};

/// Write all of `data`, waiting for write permits, then flush.
pub async fn write_all(dst: &mut DynOutputStream, mut data: Bytes) -> Result<(), StreamError> {
    while !data.is_empty() {
        let permit = dst.check_write()?;
        if permit == 0 {
            dst.ready().await;
            continue;
        }
        let chunk = data.split_to(permit.min(data.len()));
        dst.write(chunk)?;
    }
    Ok(())
}

/// Flush and wait until the flush is done.
pub async fn flush(dst: &mut DynOutputStream) -> Result<(), StreamError> {
    dst.flush()?;
    loop {
        // check_write reports the flush's failure, if any, once it completes.
        dst.ready().await;
        if dst.check_write()? > 0 {
            return Ok(());
        }
    }
}

/// A stream error as text (the stream's own error, not a trap).
pub fn stream_error_text(e: &StreamError) -> String {
    match e {
        StreamError::Closed => "the stream was closed".into(),
        StreamError::LastOperationFailed(e) => format!("{e:#}"),
        StreamError::Trap(e) => format!("{e:#}"),
    }
}
