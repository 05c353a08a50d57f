//! psql's stdin after the host's `\restrict` line: whole lines `\restrict TOKEN` and
//! `\unrestrict TOKEN` become comments of the same length (`--` and spaces), so the byte
//! count a pod exec frames stdin by stays exact. A plain-format dump of PostgreSQL 13.22/14.19/15.14/
//! 16.10/17.6 or later begins and ends with such lines; psql, already restricted by the
//! host, would refuse them (and stop, under ON_ERROR_STOP). Masking them is for that
//! compatibility only: the host's key is never on the stream, so no line of it can lift the
//! restriction. Memory stays bounded: only the start of a line is held while deciding.

use super::{BoxRead, BoxWrite, ExitInfo, RunningProcess, StdinLength};
use crate::wit::WitError;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Longest line that can be one to drop (`\unrestrict ` + a token).
const MAX_HELD: usize = 160;

pub struct MaskRestrictLines<W> {
    inner: W,
    /// The start of the current line, while it could still be one to drop.
    held: Vec<u8>,
    /// The current line is being passed through (it is not one to drop).
    passing: bool,
    /// Bytes accepted but not yet written to `inner`.
    out: Vec<u8>,
    written: usize,
}

impl<W> MaskRestrictLines<W> {
    /// `prefix` goes out first, with the first write (or the flush or shutdown).
    pub fn new(inner: W, prefix: &[u8]) -> Self {
        MaskRestrictLines {
            inner,
            held: Vec::new(),
            passing: false,
            out: prefix.to_vec(),
            written: 0,
        }
    }
}

/// A comment as long as `line` (`\r` kept), in its place.
fn mask(line: &[u8]) -> Vec<u8> {
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = b"--".to_vec();
    out.resize(body.len(), b' ');
    out.extend_from_slice(&line[body.len()..]);
    out
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

impl<W: AsyncWrite + Unpin> MaskRestrictLines<W> {
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
                if is_restrict_line(&self.held) {
                    self.held = mask(&self.held);
                }
                self.out.append(&mut self.held);
                self.out.push(b'\n');
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

impl<W: AsyncWrite + Unpin> AsyncWrite for MaskRestrictLines<W> {
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
            let held = std::mem::take(&mut this.held);
            let line = if is_restrict_line(&held) {
                mask(&held)
            } else {
                held
            };
            this.out.extend_from_slice(&line);
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
    preamble_len: u64,
}

impl Preambled {
    pub(crate) fn start(
        mut inner: Box<dyn RunningProcess>,
        preamble: &[u8],
    ) -> Box<dyn RunningProcess> {
        let stdin = inner
            .take_stdin()
            .map(|w| Box::pin(MaskRestrictLines::new(w, preamble)) as BoxWrite);
        Box::new(Preambled {
            inner,
            stdin,
            preamble_len: preamble.len() as u64,
        })
    }
}

#[async_trait::async_trait]
impl RunningProcess for Preambled {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin.take()
    }
    fn stdin_length(&mut self) -> Option<StdinLength> {
        // Masking keeps lengths: the process reads the preamble and then as many bytes.
        let inner = self.inner.stdin_length()?;
        let preamble = self.preamble_len;
        Some(Box::new(move |n| inner(n + preamble)))
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
        let mut f = MaskRestrictLines::new(Vec::new(), b"");
        for c in chunks {
            f.write_all(c).await.unwrap();
        }
        f.shutdown().await.unwrap();
        String::from_utf8(f.inner).unwrap()
    }

    #[tokio::test]
    async fn only_whole_restrict_lines_are_masked_to_the_same_length() {
        let dump = b"\\restrict AbC123\nSET x = 1;\nCOPY t FROM stdin;\n1\t\\\\restrict x\n\\.\n\\unrestrict AbC123\n";
        let want = "--              \nSET x = 1;\nCOPY t FROM stdin;\n1\t\\\\restrict x\n\\.\n--                \n";
        assert_eq!(want.len(), dump.len());
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
