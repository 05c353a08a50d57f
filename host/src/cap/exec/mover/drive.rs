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

#[cfg(test)]
mod tests {
    //! A hostile or broken mover: whatever it says, the daemon signs only the parts of its
    //! one upload, records nothing it did not complete, and aborts the upload.
    use super::*;
    use crate::cap::exec::{BoxRead, BoxWrite};
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Signer {
        calls: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl PartSigner for Signer {
        async fn create(&self, path: &Path) -> Result<String, String> {
            self.calls.lock().unwrap().push(format!("create {path}"));
            Ok("up-1".into())
        }
        async fn part_url(&self, _: &Path, id: &str, part: usize) -> Result<String, String> {
            self.calls.lock().unwrap().push(format!("sign {part}"));
            Ok(format!("http://store/{id}/{part}"))
        }
        async fn complete(&self, _: &Path, _: &str, etags: Vec<String>) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("complete {}", etags.join(",")));
            Ok(())
        }
        async fn abort(&self, _: &Path, _: &str) -> Result<(), String> {
            self.calls.lock().unwrap().push("abort".into());
            Ok(())
        }
    }

    /// A mover that says `script` (one line each; `<answer>` waits for one answer).
    struct Scripted {
        stdin: Option<BoxWrite>,
        stdout: Option<BoxRead>,
    }

    #[async_trait::async_trait]
    impl RunningProcess for Scripted {
        fn take_stdin(&mut self) -> Option<BoxWrite> {
            self.stdin.take()
        }
        fn take_stdout(&mut self) -> Option<BoxRead> {
            self.stdout.take()
        }
        async fn wait(&mut self) -> Result<ExitInfo, crate::wit::WitError> {
            Ok(ExitInfo {
                code: Some(0),
                signal: None,
                stderr: vec![],
            })
        }
        fn kill(&mut self) {}
    }

    fn mover(script: Vec<String>) -> (Box<dyn RunningProcess>, Arc<Mutex<Vec<String>>>) {
        let (daemon_in, mut mover_in) = tokio::io::duplex(1 << 20);
        let (mut mover_out, daemon_out) = tokio::io::duplex(1 << 20);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(&mut mover_in).lines();
            let job = lines.next_line().await.ok().flatten().unwrap_or_default();
            log.lock().unwrap().push(job);
            for line in script {
                if line == "<answer>" {
                    let a = lines.next_line().await.ok().flatten().unwrap_or_default();
                    log.lock().unwrap().push(a);
                    continue;
                }
                if mover_out.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let p = Scripted {
            stdin: Some(Box::pin(daemon_in)),
            stdout: Some(Box::pin(daemon_out)),
        };
        (Box::new(p), heard)
    }

    fn job() -> Job {
        Job {
            argv: vec!["pg_dump".into()],
            env: vec![("PGPASSWORD".into(), "s3cret".into())],
            zstd_level: Some(3),
            recipients: vec![],
            profile: "p".into(),
            stderr_tail: 100,
            ca_pem: None,
        }
    }

    async fn run(script: &[&str]) -> (Result<MoverDone, String>, Vec<String>, Vec<String>) {
        let script = script.iter().map(|s| s.to_string()).collect();
        let (proc, heard) = mover(script);
        let signer = Signer::default();
        let counters = Counters {
            transfer: Arc::new(AtomicU64::new(0)),
            action: Arc::new(AtomicU64::new(0)),
        };
        let path = Path::from("rp/db.pgdump.zst");
        let r = drive(
            proc,
            &job(),
            &signer,
            &path,
            &counters,
            &CancellationToken::new(),
        )
        .await;
        let calls = signer.calls.lock().unwrap().clone();
        let heard = heard.lock().unwrap().clone();
        (r, calls, heard)
    }

    const DONE: &str = r#"{"type":"done","written":{"size":10,"storedSize":12,"sha256":"ab"},"etags":["\"e1\""],"exit":{"code":0,"signal":null,"stderr":""}}
"#;

    #[tokio::test]
    async fn a_good_mover_gets_its_parts_signed_and_the_upload_completed() {
        let (r, calls, heard) = run(&[
            r#"{"type":"need","part":1}
"#,
            "<answer>",
            r#"{"type":"progress","bytes":10}
"#,
            DONE,
        ])
        .await;
        let done = r.unwrap();
        assert_eq!(done.written.stored_size, 12);
        assert_eq!(
            calls,
            ["create rp/db.pgdump.zst", "sign 1", "complete \"e1\""]
        );
        assert!(heard[0].contains("pg_dump"), "{heard:?}");
        assert!(heard[1].contains("http://store/up-1/1"), "{heard:?}");
    }

    #[tokio::test]
    async fn part_numbers_outside_the_upload_are_refused_unsigned() {
        let (r, calls, heard) = run(&[
            r#"{"type":"need","part":0}
"#,
            "<answer>",
            r#"{"type":"need","part":10001}
"#,
            "<answer>",
            DONE,
        ])
        .await;
        assert!(r.is_ok());
        assert!(!calls.iter().any(|c| c.starts_with("sign")), "{calls:?}");
        assert!(
            heard[1].contains("refused") && heard[2].contains("refused"),
            "{heard:?}"
        );
    }

    #[tokio::test]
    async fn nonsense_an_overlong_line_or_silence_aborts_the_upload() {
        for script in [
            vec!["not json\n".to_string()],
            vec![format!("{}\n", "x".repeat(super::super::MAX_LINE + 10))],
            vec![],
            vec![r#"{"type":"done","written":{"size":1,"storedSize":1,"sha256":"a"},"etags":[],"exit":{"code":0,"signal":null,"stderr":""}}
"#.to_string()],
            vec![r#"{"type":"failed","error":"disk full","exit":null}
"#.to_string()],
        ] {
            let refs: Vec<&str> = script.iter().map(String::as_str).collect();
            let (r, calls, _) = run(&refs).await;
            let e = r.err().expect("accepted");
            assert_eq!(calls.last().map(String::as_str), Some("abort"), "{e}: {calls:?}");
            assert!(!calls.iter().any(|c| c.starts_with("complete")), "{calls:?}");
        }
    }
}
