//! Starting a command through the API server's exec and the process it becomes: stdin
//! framed (or raw, for a mover's conversation), stdout through a larger pipe, the stderr
//! tail, and the exit status from the exec's status channel.

use super::*;
/// What a process's stdin carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::cap::exec) enum StdinMode {
    /// Nothing (after the preamble).
    None,
    /// The plugin's input, [`framed`].
    Framed,
    /// A conversation, as written (a mover's control channel).
    Raw,
}

/// [`PodExec::attach`] in namespace `ns`.
#[allow(clippy::too_many_arguments)]
pub(in crate::cap::exec) async fn attach_in(
    client: &Client,
    ns: &str,
    pod_name: &str,
    container: &str,
    (program, argv): (&str, Vec<String>),
    preamble: &[u8],
    mode: StdinMode,
    stderr_tail: usize,
) -> Result<PodProcess, WitError> {
    let program = program.to_string();
    let stdin_wanted = mode != StdinMode::None;
    let open_stdin = stdin_wanted || !preamble.is_empty();
    let params = AttachParams::default()
        .container(container.to_string())
        .stdin(open_stdin)
        .stdout(true)
        .stderr(true);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut attached = pods
        .exec(pod_name, argv, &params)
        .await
        .map_err(|e| err(&format!("exec in pod {pod_name} container {container}"), e))?;
    let mut stdin = attached.stdin();
    if let Some(w) = stdin.as_mut()
        && !preamble.is_empty()
    {
        w.write_all(preamble)
            .await
            .map_err(|e| WitError::Io(format!("exec in pod {pod_name}: {e}")))?;
    }
    if !stdin_wanted && let Some(mut w) = stdin.take() {
        let _ = w.shutdown().await;
    }
    let stderr = attached
        .stderr()
        .map(|r| crate::cap::exec::keep_stderr_tail(r, stderr_tail));
    // Local stdin closes when dropped; the exec stream's needs a shutdown to send its
    // close. A pipe in between turns the plugin dropping its end into that shutdown,
    // and puts the frame's first line before the input.
    let (length, length_told) = tokio::sync::oneshot::channel();
    let framed_input = mode == StdinMode::Framed;
    let stdin = stdin.map(|w| {
        if !framed_input {
            return Box::pin(w) as BoxWrite;
        }
        let (ours, theirs) = tokio::io::duplex(64 << 10);
        tokio::spawn(feed_framed(theirs, w, length_told));
        Box::pin(ours) as BoxWrite
    });
    Ok(PodProcess {
        stdin_length: (framed_input && stdin.is_some()).then_some(length),
        stdin,
        // kube-rs hands stdout over in 1 KiB steps; a larger pipe lets the reader take
        // big chunks (fewer wakeups and hashing/compression calls downstream).
        stdout: attached.stdout().map(|mut r| {
            let (mut w, ours) = tokio::io::duplex(256 << 10);
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
            Box::pin(ours) as BoxRead
        }),
        stderr,
        program,
        where_: format!("container {container} of pod {ns}/{pod_name}"),
        attached,
    })
}

async fn feed_framed(
    mut from: tokio::io::DuplexStream,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut length: tokio::sync::oneshot::Receiver<u64>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut told = true;
    let (header, first) = loop {
        tokio::select! {
            biased;
            n = &mut length, if told => match n {
                Ok(n) => break (n.to_string(), 0),
                Err(_) => told = false,
            },
            r = from.read(&mut buf) => match r {
                Ok(0) => break ("0".to_string(), 0),
                Ok(k) => break ("-".to_string(), k),
                Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
            },
        }
    };
    if to.write_all(format!("{header}\n").as_bytes()).await.is_ok()
        && to.write_all(&buf[..first]).await.is_ok()
    {
        let _ = tokio::io::copy(&mut from, &mut to).await;
    }
    let _ = to.shutdown().await;
}

pub(in crate::cap::exec) struct PodProcess {
    attached: AttachedProcess,
    stdin: Option<BoxWrite>,
    /// Told the input's length by [`RunningProcess::stdin_length`].
    stdin_length: Option<tokio::sync::oneshot::Sender<u64>>,
    stdout: Option<BoxRead>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    program: String,
    where_: String,
}

#[async_trait::async_trait]
impl RunningProcess for PodProcess {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin.take()
    }

    fn stdin_length(&mut self) -> Option<crate::cap::exec::StdinLength> {
        let tx = self.stdin_length.take()?;
        Some(Box::new(move |n| {
            let _ = tx.send(n);
        }))
    }

    fn take_stdout(&mut self) -> Option<BoxRead> {
        self.stdout.take()
    }

    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        // The exec stream stalls while stdout is not read; output nobody took is dropped.
        if let Some(mut out) = self.stdout.take() {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
            });
        }
        // No more input is coming once the plugin waits.
        if let Some(mut w) = self.stdin.take() {
            let _ = w.shutdown().await;
        }
        let status = match self.attached.take_status() {
            Some(s) => s.await,
            None => None,
        };
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let Some(status) = status else {
            return Err(WitError::Io(format!(
                "the exec connection to {} closed before `{}` ended",
                self.where_, self.program
            )));
        };
        if status.status.as_deref() == Some("Success") {
            return Ok(ExitInfo {
                code: Some(0),
                signal: None,
                stderr,
            });
        }
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<i32>().ok());
        let message = status.message.unwrap_or_default();
        match code {
            Some(code) => Ok(ExitInfo {
                code: Some(code),
                signal: None,
                stderr,
            }),
            None if message.contains("executable file not found") => {
                Err(WitError::NotFound(format!(
                    "`{}` was not found on the PATH of {} (use an image that has it)",
                    self.program, self.where_
                )))
            }
            None => Err(WitError::Io(format!(
                "exec of `{}` in {}: {message}",
                self.program, self.where_
            ))),
        }
    }

    fn kill(&mut self) {
        // Closing the stream ends the exec; the API server stops the process with it.
        self.attached.abort();
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        self.attached.abort();
        if let Some(h) = self.stderr.take() {
            h.abort();
        }
    }
}
