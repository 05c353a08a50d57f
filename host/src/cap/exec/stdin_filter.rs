//! psql's stdin after the host's `\restrict` line: whole lines `\restrict TOKEN` and
//! `\unrestrict TOKEN` are dropped. A plain-format dump of PostgreSQL 13.22/14.19/15.14/
//! 16.10/17.6 or later begins and ends with such lines; psql, already restricted by the
//! host, would refuse them (and stop, under ON_ERROR_STOP). Dropping them is for that
//! compatibility only: the host's key is never on the stream, so no line of it can lift the
//! restriction. Memory stays bounded: only the start of a line is held while deciding.

use super::{BoxRead, BoxWrite, ExitInfo, RunningProcess};
use crate::wit::WitError;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Longest line that can be one to drop (`\unrestrict ` + a token).
const MAX_HELD: usize = 160;

pub struct DropRestrictLines<W> {
    inner: W,
    /// The start of the current line, while it could still be one to drop.
    held: Vec<u8>,
    /// The current line is being passed through (it is not one to drop).
    passing: bool,
    /// Bytes accepted but not yet written to `inner`.
    out: Vec<u8>,
    written: usize,
}

impl<W> DropRestrictLines<W> {
    pub fn new(inner: W) -> Self {
        DropRestrictLines {
            inner,
            held: Vec::new(),
            passing: false,
            out: Vec::new(),
            written: 0,
        }
    }
}

/// `held` (a whole line, newline excluded) is `\restrict X` or `\unrestrict X`.
fn is_restrict_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let token = line
        .strip_prefix(b"\\restrict ")
        .or_else(|| line.strip_prefix(b"\\unrestrict "));
    token.is_some_and(|t| !t.is_empty() && t.iter().all(|b| b.is_ascii_alphanumeric()))
}

/// Could `held` (no newline yet) still become such a line?
fn could_be(held: &[u8]) -> bool {
    if held.len() > MAX_HELD {
        return false;
    }
    let starts = |p: &[u8]| {
        let n = held.len().min(p.len());
        held[..n] == p[..n]
    };
    if !(starts(b"\\restrict ") || starts(b"\\unrestrict ")) {
        return false;
    }
    held.iter()
        .skip_while(|b| **b != b' ')
        .skip(1)
        .all(|b| b.is_ascii_alphanumeric() || *b == b'\r')
}

impl<W: AsyncWrite + Unpin> DropRestrictLines<W> {
    fn filter(&mut self, buf: &[u8]) {
        for &b in buf {
            if self.passing {
                self.out.push(b);
                if b == b'\n' {
                    self.passing = false;
                }
                continue;
            }
            if b == b'\n' {
                if !is_restrict_line(&self.held) {
                    self.out.append(&mut self.held);
                    self.out.push(b'\n');
                }
                self.held.clear();
                continue;
            }
            self.held.push(b);
            if !could_be(&self.held) {
                self.out.append(&mut self.held);
                self.passing = true;
            }
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for DropRestrictLines<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        this.filter(buf);
        // Start writing now; what does not fit waits for the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        // A last line without a newline.
        if !this.held.is_empty() {
            if !is_restrict_line(&this.held) {
                let held = std::mem::take(&mut this.held);
                this.out.extend_from_slice(&held);
            }
            this.held.clear();
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

/// A process whose stdin starts with bytes the host wrote (psql's `\restrict` line) before
/// the plugin's.
pub(crate) struct Preambled {
    inner: Box<dyn RunningProcess>,
    stdin: Option<BoxWrite>,
}

impl Preambled {
    pub(crate) async fn start(
        mut inner: Box<dyn RunningProcess>,
        preamble: &[u8],
    ) -> Result<Box<dyn RunningProcess>, WitError> {
        use tokio::io::AsyncWriteExt;
        let mut stdin = inner.take_stdin();
        if let Some(w) = stdin.as_mut() {
            w.write_all(preamble)
                .await
                .map_err(|e| WitError::Io(format!("writing to the process's stdin: {e}")))?;
        }
        let stdin = stdin.map(|w| Box::pin(DropRestrictLines::new(w)) as BoxWrite);
        Ok(Box::new(Preambled { inner, stdin }))
    }
}

#[async_trait::async_trait]
impl RunningProcess for Preambled {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin.take()
    }
    fn take_stdout(&mut self) -> Option<BoxRead> {
        self.inner.take_stdout()
    }
    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        // No more input is coming once the plugin waits.
        if let Some(mut w) = self.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let _ = w.shutdown().await;
        }
        self.inner.wait().await
    }
    fn kill(&mut self) {
        self.inner.kill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn through(chunks: &[&[u8]]) -> String {
        let mut f = DropRestrictLines::new(Vec::new());
        for c in chunks {
            f.write_all(c).await.unwrap();
        }
        f.shutdown().await.unwrap();
        String::from_utf8(f.inner).unwrap()
    }

    #[tokio::test]
    async fn only_whole_restrict_lines_are_dropped() {
        let dump = b"\\restrict AbC123\nSET x = 1;\nCOPY t FROM stdin;\n1\t\\\\restrict x\n\\.\n\\unrestrict AbC123\n";
        let want = "SET x = 1;\nCOPY t FROM stdin;\n1\t\\\\restrict x\n\\.\n";
        assert_eq!(through(&[dump]).await, want);
        // The same, one byte at a time.
        let bytes: Vec<&[u8]> = dump.chunks(1).collect();
        assert_eq!(through(&bytes).await, want);
        // Everything else passes as it is, other meta-commands included (psql refuses them).
        let other =
            "\\! touch x\n\\restrict with space\n\\restrictX\nSELECT 1; \\unrestrict k\nlast";
        assert_eq!(through(&[other.as_bytes()]).await, other);
        let long = format!("\\restrict {}\n", "a".repeat(1000));
        assert_eq!(through(&[long.as_bytes()]).await, long);
    }
}
