//! A process started only when something needs it: its output is read or it is waited
//! for. Until then a mover may claim it ([`MoverClaim`]): the command then never starts
//! here, it runs beside the workload and its output goes straight to the location
//! ([`crate::cap::exec::mover`]); waiting for the process waits for the mover's report of it.

use super::{BoxRead, BoxWrite, ExitInfo, RunningProcess, SpawnSpec};
use crate::wit::WitError;
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;

/// Starts the process for real.
pub type StartFn =
    Box<dyn FnOnce() -> BoxFuture<'static, Result<Box<dyn RunningProcess>, WitError>> + Send>;

enum Slot {
    Waiting(StartFn),
    Running(Box<dyn RunningProcess>),
    /// A mover runs the command; its end arrives here.
    Moved(oneshot::Receiver<Result<ExitInfo, WitError>>),
    Failed(WitError),
    /// Waited for (or being waited for).
    Gone,
}

struct State {
    slot: Slot,
    /// The started process's stdout, for whoever reads it.
    stdout: Option<BoxRead>,
    /// What a mover would run.
    spec: Option<SpawnSpec>,
}

async fn start(st: &mut State) {
    if !matches!(st.slot, Slot::Waiting(_)) {
        return;
    }
    let Slot::Waiting(f) = std::mem::replace(&mut st.slot, Slot::Gone) else {
        unreachable!()
    };
    st.spec = None;
    st.slot = match f().await {
        Ok(mut p) => {
            st.stdout = p.take_stdout();
            Slot::Running(p)
        }
        Err(e) => Slot::Failed(e),
    };
}

/// A process that starts on first need.
pub struct Deferred {
    state: Arc<Mutex<State>>,
    stdout_taken: bool,
    /// Cancelled by `kill`: a mover running the command stops.
    killed: CancellationToken,
}

impl Deferred {
    pub fn new(spec: SpawnSpec, start: StartFn) -> Deferred {
        Deferred {
            state: Arc::new(Mutex::new(State {
                slot: Slot::Waiting(start),
                stdout: None,
                spec: Some(spec),
            })),
            stdout_taken: false,
            killed: CancellationToken::new(),
        }
    }
}

#[async_trait::async_trait]
impl RunningProcess for Deferred {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        // Only processes without input are deferred.
        None
    }

    fn take_stdout(&mut self) -> Option<BoxRead> {
        if std::mem::replace(&mut self.stdout_taken, true) {
            return None;
        }
        Some(Box::pin(LazyStdout {
            state: self.state.clone(),
            opening: None,
            reader: None,
        }))
    }

    fn mover_claim(&mut self) -> Option<MoverClaim> {
        Some(MoverClaim {
            state: self.state.clone(),
            killed: self.killed.clone(),
        })
    }

    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        let slot = {
            let mut st = self.state.lock().await;
            start(&mut st).await;
            // Output nobody took would stall the process: drop it as it comes.
            if !self.stdout_taken
                && let Some(mut out) = st.stdout.take()
            {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
                });
            }
            std::mem::replace(&mut st.slot, Slot::Gone)
        };
        match slot {
            Slot::Running(mut p) => p.wait().await,
            Slot::Moved(rx) => rx.await.unwrap_or_else(|_| {
                Err(WitError::Io(
                    "the mover running the command ended without a result".into(),
                ))
            }),
            Slot::Failed(e) => Err(e),
            Slot::Waiting(_) | Slot::Gone => Err(WitError::InvalidArgument(
                "the process was already waited for".into(),
            )),
        }
    }

    fn kill(&mut self) {
        self.killed.cancel();
        if let Ok(mut st) = self.state.try_lock() {
            match &mut st.slot {
                Slot::Running(p) => p.kill(),
                Slot::Waiting(_) => st.slot = Slot::Failed(WitError::Cancelled),
                _ => {}
            }
        }
    }
}

/// Taken by a mover: what to run, where to say how it ended, and the process's kill.
pub struct MoverStart {
    pub spec: SpawnSpec,
    pub exit: oneshot::Sender<Result<ExitInfo, WitError>>,
    pub killed: CancellationToken,
}

/// The right of `location.put` to have a deferred process's output made by a mover.
#[derive(Clone)]
pub struct MoverClaim {
    state: Arc<Mutex<State>>,
    killed: CancellationToken,
}

impl MoverClaim {
    /// The command, if it has not started (else its output is read as usual).
    pub async fn claim(&self) -> Option<MoverStart> {
        let mut st = self.state.lock().await;
        if !matches!(st.slot, Slot::Waiting(_)) {
            return None;
        }
        let spec = st.spec.take()?;
        let (tx, rx) = oneshot::channel();
        st.slot = Slot::Moved(rx);
        Some(MoverStart {
            spec,
            exit: tx,
            killed: self.killed.clone(),
        })
    }
}

/// stdout that starts the process on the first read; empty if a mover took the command.
struct LazyStdout {
    state: Arc<Mutex<State>>,
    opening: Option<BoxFuture<'static, std::io::Result<Option<BoxRead>>>>,
    reader: Option<BoxRead>,
}

impl AsyncRead for LazyStdout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if let Some(r) = self.reader.as_mut() {
                return r.as_mut().poll_read(cx, buf);
            }
            if self.opening.is_none() {
                let state = self.state.clone();
                self.opening = Some(Box::pin(async move {
                    let mut st = state.lock().await;
                    start(&mut st).await;
                    if let Slot::Failed(e) = &st.slot {
                        return Err(std::io::Error::other(crate::cap::error_text(e)));
                    }
                    Ok(st.stdout.take())
                }));
            }
            let opening = self.opening.as_mut().expect("set above");
            match opening.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Moved to a mover, or already read: no output here.
                Poll::Ready(Ok(None)) => {
                    self.reader = Some(Box::pin(tokio::io::empty()));
                }
                Poll::Ready(Ok(Some(r))) => self.reader = Some(r),
            }
        }
    }
}

/// A process's stdout as a wasi stream that begins reading only when it is first polled or
/// read: `location.put` can take it from the guest and give the process to a mover before
/// a byte is read (an eager stream would start the process at once).
pub struct LazyInput {
    reader: Option<BoxRead>,
    stream: Option<wasmtime_wasi::p2::pipe::AsyncReadStream>,
}

impl LazyInput {
    pub fn new(reader: BoxRead) -> LazyInput {
        LazyInput {
            reader: Some(reader),
            stream: None,
        }
    }

    fn stream(&mut self) -> &mut wasmtime_wasi::p2::pipe::AsyncReadStream {
        if self.stream.is_none() {
            let r = self
                .reader
                .take()
                .unwrap_or_else(|| Box::pin(tokio::io::empty()));
            self.stream = Some(wasmtime_wasi::p2::pipe::AsyncReadStream::new(r));
        }
        self.stream.as_mut().expect("set above")
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::InputStream for LazyInput {
    fn read(&mut self, size: usize) -> wasmtime_wasi::p2::StreamResult<bytes::Bytes> {
        wasmtime_wasi::p2::InputStream::read(self.stream(), size)
    }

    async fn cancel(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            wasmtime_wasi::p2::InputStream::cancel(s).await;
        }
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for LazyInput {
    async fn ready(&mut self) {
        wasmtime_wasi::p2::Pollable::ready(self.stream()).await;
    }
}
