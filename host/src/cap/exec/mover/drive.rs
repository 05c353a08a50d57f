//! The daemon's side of a mover: create the upload, hand the mover its job, sign each part
//! it asks for, then complete the upload with its ETags, or abort it on any failure.

use super::worker::read_line;
use super::{ExitMsg, FromMover, Job, MAX_PARTS, ToMover, WrittenMsg};
use crate::cap::exec::{ExitInfo, RunningProcess};
use crate::storage::pipeline::{Counters, Written};
use crate::storage::presign::PartSigner;
use base64::Engine;
use object_store::path::Path;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// What a mover did.
pub struct MoverDone {
    pub written: Written,
    /// How the command ended.
    pub exit: ExitInfo,
}

/// Run `job` through the started `coffer mover run` process `mover`, writing `path`
/// through `signer`. Nothing is left behind on failure: the upload is aborted and the
/// mover's exec ended.
pub async fn drive(
    mut mover: Box<dyn RunningProcess>,
    job: &Job,
    signer: &dyn PartSigner,
    path: &Path,
    counters: &Counters,
    cancel: &CancellationToken,
) -> Result<MoverDone, String> {
    let id = signer.create(path).await?;
    let talked = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err("cancelled: the action ended before the mover finished".to_string()),
        r = talk(mover.as_mut(), job, signer, path, &id, counters) => r,
    };
    let (written, etags, exit) = match talked {
        Ok(t) => t,
        Err(e) => {
            mover.kill();
            if let Err(abort) = signer.abort(path, &id).await {
                tracing::warn!(error = %abort, "aborting a mover's upload failed; its parts may remain");
            }
            return Err(e);
        }
    };
    if let Err(e) = signer.complete(path, &id, etags).await {
        let _ = signer.abort(path, &id).await;
        return Err(e);
    }
    // The mover's exec ends once it has reported; one that does not is ended.
    if tokio::time::timeout(std::time::Duration::from_secs(30), mover.wait())
        .await
        .is_err()
    {
        mover.kill();
    }
    Ok(MoverDone {
        written: Written {
            size: written.size,
            stored_size: written.stored_size,
            sha256: written.sha256,
        },
        exit: ExitInfo {
            code: exit.code,
            signal: exit.signal,
            stderr: base64::engine::general_purpose::STANDARD
                .decode(exit.stderr)
                .unwrap_or_default(),
        },
    })
}

async fn talk(
    mover: &mut dyn RunningProcess,
    job: &Job,
    signer: &dyn PartSigner,
    path: &Path,
    id: &str,
    counters: &Counters,
) -> Result<(WrittenMsg, Vec<String>, ExitMsg), String> {
    let mut to = mover.take_stdin().ok_or("the mover's exec has no stdin")?;
    let from = mover
        .take_stdout()
        .ok_or("the mover's exec has no stdout")?;
    let mut from = BufReader::new(from);
    let mut say = async |msg: &[u8]| -> Result<(), String> {
        to.write_all(msg)
            .await
            .map_err(|e| format!("writing to the mover: {e}"))?;
        to.write_all(b"\n")
            .await
            .map_err(|e| format!("writing to the mover: {e}"))?;
        to.flush()
            .await
            .map_err(|e| format!("writing to the mover: {e}"))
    };
    say(&serde_json::to_vec(job).map_err(|e| e.to_string())?).await?;
    let mut reported = 0u64;
    let mut line = Vec::new();
    loop {
        if let Err(e) = read_line(&mut from, &mut line).await {
            let ended = mover.wait().await;
            let why = match ended {
                Ok(x) => format!(
                    "exit code {:?}: {}",
                    x.code,
                    String::from_utf8_lossy(&x.stderr).trim()
                ),
                Err(e) => crate::cap::error_text(&e),
            };
            return Err(format!(
                "the mover stopped without reporting ({e:#}; {why})"
            ));
        }
        let msg: FromMover = serde_json::from_slice(&line)
            .map_err(|e| format!("the mover sent a message that is not valid: {e}"))?;
        tracing::debug!(?msg, "from the mover");
        match msg {
            FromMover::Need { part } => {
                let answer = if part == 0 || part > MAX_PARTS {
                    ToMover::Refused {
                        part,
                        error: format!("part numbers run from 1 to {MAX_PARTS}"),
                    }
                } else {
                    match signer.part_url(path, id, part).await {
                        Ok(url) => ToMover::Url { part, url },
                        Err(error) => ToMover::Refused { part, error },
                    }
                };
                say(&serde_json::to_vec(&answer).map_err(|e| e.to_string())?).await?;
            }
            FromMover::Progress { bytes } => {
                if bytes > reported {
                    counters.add((bytes - reported) as usize);
                    reported = bytes;
                }
            }
            FromMover::Done {
                written,
                etags,
                exit,
            } => {
                if written.size > reported {
                    counters.add((written.size - reported) as usize);
                }
                if etags.is_empty() || etags.len() > MAX_PARTS {
                    return Err(format!("the mover reported {} parts", etags.len()));
                }
                return Ok((written, etags, exit));
            }
            FromMover::Failed { error, exit } => {
                let tail = exit
                    .and_then(|x| {
                        base64::engine::general_purpose::STANDARD
                            .decode(x.stderr)
                            .ok()
                    })
                    .map(|s| String::from_utf8_lossy(&s).trim().to_string())
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" (the command's stderr: {s})"))
                    .unwrap_or_default();
                return Err(format!("the mover failed: {error}{tail}"));
            }
        }
    }
}
