//! tracing to stderr, written around the progress bar so the two do not garble each other.

use super::LogFormat;
use std::io::Write;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub fn init(level: Option<&str>, format: LogFormat) {
    let filter = level
        .map(String::from)
        .or_else(|| std::env::var("COFFER_LOG").ok())
        .unwrap_or_else(|| "info,wasmtime=warn,cranelift=warn".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("warning: bad log filter {filter:?} ({e}); using `info`");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AroundProgress)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.compact().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Clone, Copy)]
struct AroundProgress;

impl<'a> MakeWriter<'a> for AroundProgress {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::new())
    }
}

/// Buffers one event and writes it whole, with the progress bar hidden meanwhile.
pub struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        super::progress::suspend(|| {
            let _ = std::io::stderr().write_all(&bytes);
        });
    }
}
