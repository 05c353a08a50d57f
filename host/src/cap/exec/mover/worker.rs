//! The mover's side: `coffer mover run` in the mover pod. It reads a [`Job`], runs the
//! command, pumps its stdout through the data path into pre-signed part URLs it asks the
//! daemon for, and reports how it went. Its stdout is the control channel, so nothing
//! else may write there; logs go to stderr.

use super::{ExitMsg, FromMover, Job, MAX_LINE, ToMover};
use crate::storage::crypt::Encryption;
use crate::storage::pipeline::{self, Counters};
use anyhow::{Context, Result, bail};
use base64::Engine;
use bytes::Bytes;
use futures::FutureExt;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Attempts at one part (each with a freshly signed URL) before the upload fails.
const PART_ATTEMPTS: u32 = 5;

/// Where part `n`'s URL (or why there is none) goes.
type UrlAnswer = oneshot::Sender<Result<String, String>>;

/// The control channel's writing end, shared by the parts in flight.
#[derive(Clone)]
struct Control {
    out: Arc<tokio::sync::Mutex<tokio::io::Stdout>>,
    /// Parts waiting for their URL.
    waiting: Arc<Mutex<HashMap<usize, UrlAnswer>>>,
}

impl Control {
    async fn say(&self, msg: &FromMover) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut out = self.out.lock().await;
        out.write_all(&line).await?;
        out.flush().await
    }

    async fn url(&self, part: usize) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(part, tx);
        self.say(&FromMover::Need { part })
            .await
            .map_err(|e| format!("asking for part {part}'s URL: {e}"))?;
        rx.await
            .map_err(|_| "the daemon closed the control channel".to_string())?
    }
}

/// Parts `PUT` to URLs the daemon signs; their ETags, in order, for the daemon to complete.
struct PresignedParts {
    next: usize,
    etags: Arc<Mutex<Vec<Option<String>>>>,
    control: Control,
    http: reqwest::Client,
}

impl std::fmt::Debug for PresignedParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedParts")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for PresignedParts {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.next += 1;
        let part = self.next;
        let (etags, control, http) = (self.etags.clone(), self.control.clone(), self.http.clone());
        async move {
            let etag = put_part(&control, &http, part, Bytes::from(data))
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "mover",
                    source: e.into(),
                })?;
            let mut all = etags.lock().unwrap();
            if all.len() < part {
                all.resize(part, None);
            }
            all[part - 1] = Some(etag);
            Ok(())
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        // The daemon completes the upload with the ETags reported in `done`.
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // The daemon aborts what it created.
        Ok(())
    }
}

/// `PUT` one part, asking for a fresh URL on each attempt (an expired or refused one is
/// simply replaced).
async fn put_part(
    control: &Control,
    http: &reqwest::Client,
    part: usize,
    body: Bytes,
) -> Result<String, String> {
    let mut last = String::new();
    for attempt in 0..PART_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let url = control.url(part).await?;
        match http.put(&url).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => {
                return r
                    .headers()
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
                    .ok_or_else(|| format!("part {part}: the store sent no ETag"));
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                last = format!(
                    "part {part}: the store answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                );
            }
            Err(e) => last = format!("part {part}: {e}"),
        }
        tracing::warn!(part, attempt, error = %last, "a part upload failed; retrying");
    }
    Err(last)
}

/// `coffer mover run`.
pub async fn run() -> Result<()> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut first = Vec::new();
    read_line(&mut input, &mut first).await?;
    let job: Job = serde_json::from_slice(&first).context("the job (first line) is not valid")?;
    let control = Control {
        out: Arc::new(tokio::sync::Mutex::new(tokio::io::stdout())),
        waiting: Default::default(),
    };
    // The daemon's answers, to the parts waiting for them.
    let waiting = control.waiting.clone();
    let answers = tokio::spawn(async move {
        let mut line = Vec::new();
        while read_line(&mut input, &mut line).await.is_ok() {
            let (part, answer) = match serde_json::from_slice::<ToMover>(&line) {
                Ok(ToMover::Url { part, url }) => (part, Ok(url)),
                Ok(ToMover::Refused { part, error }) => (part, Err(error)),
                Err(e) => {
                    tracing::warn!(error = %e, "an answer that is not valid; ignored");
                    continue;
                }
            };
            if let Some(tx) = waiting.lock().unwrap().remove(&part) {
                let _ = tx.send(answer);
            }
        }
        // No more answers: the parts still waiting fail.
        waiting.lock().unwrap().clear();
    });
    let result = work(&job, &control).await;
    answers.abort();
    control.say(&result).await?;
    // stdin is still being read on a blocking thread (the daemon never closes it, and
    // some exec paths cannot): a runtime would wait for that read forever. Done: exit.
    std::process::exit(0)
}

async fn work(job: &Job, control: &Control) -> FromMover {
    let Some((program, args)) = job.argv.split_first() else {
        return failed("the job has no command", None);
    };
    let sealer = if job.recipients.is_empty() {
        None
    } else {
        match Encryption::sealing_only(&job.profile, &job.recipients)
            .and_then(|e| e.sealer().map_err(anyhow::Error::msg))
        {
            Ok(s) => Some(s),
            Err(e) => return failed(&format!("{e:#}"), None),
        }
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // The container's own variables win over the plugin's, as they do in the workload.
    for (k, v) in &job.env {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(&format!("starting `{program}` in the mover: {e}"), None),
    };
    let stderr = child
        .stderr
        .take()
        .map(|r| crate::cap::exec::keep_stderr_tail(r, job.stderr_tail));
    let stdout = child.stdout.take().expect("piped");
    let src: wasmtime_wasi::p2::DynInputStream =
        Box::new(wasmtime_wasi::p2::pipe::AsyncReadStream::new(stdout));
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300));
    if let Some(pem) = &job.ca_pem {
        match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Ok(certs) => {
                for c in certs {
                    http = http.add_root_certificate(c);
                }
            }
            Err(e) => return failed(&format!("the Profile's CA certificates: {e}"), None),
        }
    }
    let http = match http.build() {
        Ok(h) => h,
        Err(e) => return failed(&format!("an HTTP client: {e}"), None),
    };
    let etags = Arc::new(Mutex::new(Vec::new()));
    let upload = PresignedParts {
        next: 0,
        etags: etags.clone(),
        control: control.clone(),
        http,
    };
    let counters = Counters {
        transfer: Arc::new(AtomicU64::new(0)),
        action: Arc::new(AtomicU64::new(0)),
    };
    let read = counters.transfer.clone();
    let progress_control = control.clone();
    let progress = tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let bytes = read.load(Ordering::Relaxed);
            if bytes != last {
                last = bytes;
                if progress_control
                    .say(&FromMover::Progress { bytes })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let pumped = pipeline::pump(
        src,
        Box::new(upload),
        job.zstd_level,
        sealer,
        &counters,
        &CancellationToken::new(),
    )
    .await;
    progress.abort();
    if pumped.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let stderr = match stderr {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let exit = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            ExitMsg {
                code: s.code(),
                signal: s.signal(),
                stderr: base64::engine::general_purpose::STANDARD.encode(&stderr),
            }
        }
        Err(e) => return failed(&format!("waiting for `{program}`: {e}"), None),
    };
    match pumped {
        Err(e) => failed(&e, Some(exit)),
        Ok(written) => {
            let etags: Option<Vec<String>> = etags.lock().unwrap().iter().cloned().collect();
            match etags {
                Some(etags) => FromMover::Done {
                    written: written.into(),
                    etags,
                    exit,
                },
                None => failed("a part has no ETag", Some(exit)),
            }
        }
    }
}

fn failed(error: &str, exit: Option<ExitMsg>) -> FromMover {
    FromMover::Failed {
        error: error.to_string(),
        exit,
    }
}

/// One line (without its newline) of at most [`MAX_LINE`] bytes.
pub(super) async fn read_line(
    r: &mut (impl tokio::io::AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> Result<()> {
    line.clear();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', line).await?;
    if n == 0 {
        bail!("end of input");
    }
    if line.last() != Some(&b'\n') {
        bail!("a control line longer than {MAX_LINE} bytes, or cut short");
    }
    line.pop();
    Ok(())
}

/// `coffer mover install DEST`: copy this binary to DEST (the mover pod's init container
/// puts it on the volume the mover container runs it from).
pub fn install(dest: &std::path::Path) -> Result<()> {
    let me = std::env::current_exe().context("finding this binary")?;
    let tmp = dest.with_extension("part");
    std::fs::copy(&me, &tmp)
        .with_context(|| format!("copying {} to {}", me.display(), tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

/// `coffer mover idle`: the mover container's main process, waiting for the daemon's
/// exec; it ends on SIGTERM (the pod's deletion).
pub async fn idle() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
