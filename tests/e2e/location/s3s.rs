//! s3s-fs: SigV4 checked, data on disk, the server killed mid-upload.

use super::common::*;
use coffer_tests::s3::{S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs};

#[test]
fn s3s_fs_round_trip_bad_credentials_and_server_killed_mid_upload() {
    let mut s3 = S3sFs::start();
    let bucket_dir = s3.create_bucket("backups");
    let c = cli();
    setup(&c);
    let work = tempfile::tempdir().unwrap();
    let good = secret_files(work.path(), S3S_ACCESS_KEY, S3S_SECRET_KEY);
    let bad = secret_files(work.path(), S3S_ACCESS_KEY, "not-the-secret");
    let yaml = [
        s3_profile(
            "s3s",
            &s3.endpoint(),
            "backups",
            &good,
            "  encryption: none\n",
        ),
        s3_profile(
            "badcreds",
            &s3.endpoint(),
            "backups",
            &bad,
            "  encryption: none\n",
        ),
    ]
    .join("---\n");
    assert!(c.apply(&yaml).ok);

    c.ok(&["profile", "validate", "s3s"]);
    let v = c.run(&["profile", "validate", "badcreds"]);
    assert!(!v.ok);
    assert!(
        v.stdout.contains("SignatureDoesNotMatch") || v.stdout.contains("AccessDenied"),
        "{}",
        v.stdout
    );

    // Round trip; the data is on the server's disk, compressed.
    let (src, sum) = data_file(work.path(), 40 << 20);
    let rp = restore_point_of(&backup(
        &c,
        "s3s",
        &["mode=file", &format!("path={}", src.display())],
    ));
    let stored = bucket_dir.join(format!("restorepoints/files/{rp}/file.bin.zst"));
    assert!(stored.exists(), "{} missing", stored.display());
    let dst = work.path().join("back.bin");
    restore_file(&c, &rp, &dst);
    assert_eq!(sha256_file(&dst), sum);

    // Bad credentials: refused by the server, named, nothing recorded.
    let r = backup(
        &c,
        "badcreds",
        &["mode=file", &format!("path={}", src.display())],
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("SignatureDoesNotMatch") || r.stderr.contains("AccessDenied"),
        "{}",
        r.stderr
    );
    assert_eq!(restore_points(&c).len(), 1);

    // The server is killed in the middle of an upload.
    let child = spawn_stream_backup(&c, "s3s", 2_000_000_000);
    wait_until("no part was uploaded", || {
        std::fs::read_dir(s3.root.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
    });
    s3.kill();
    let (a, _) = failed_actionset(child);
    let failed_prefix = a["status"]["prefix"].as_str().unwrap().to_string();
    assert_eq!(restore_points(&c).len(), 1, "a failed backup was recorded");

    // Back up again once the server is back: it works, and the failed one left no object.
    s3.restart();
    let (src2, sum2) = data_file(work.path(), 5 << 20);
    let rp2 = restore_point_of(&backup(
        &c,
        "s3s",
        &["mode=file", &format!("path={}", src2.display())],
    ));
    c.ok(&["verify", &rp2]);
    let dst2 = work.path().join("back2.bin");
    restore_file(&c, &rp2, &dst2);
    assert_eq!(sha256_file(&dst2), sum2);
    let leftover = bucket_dir.join(&failed_prefix);
    let files: Vec<_> = coffer_tests::files_under(&leftover);
    assert!(
        files.is_empty(),
        "objects of the failed backup remain: {files:?}"
    );
}

/// What a mover holds (docs/kubernetes.md, Movers): a pre-signed URL writes that one part of
/// that one upload. s3s-fs checks the signature, so a URL bent to another key or part, or
/// used to read, is refused; the real one works and the daemon completes the object.
#[tokio::test]
async fn a_part_url_writes_that_part_of_that_upload_and_nothing_else() {
    use coffer::storage::presign::{PartSigner, S3Parts};
    use object_store::ObjectStoreExt;
    use object_store::path::Path;
    let s3 = S3sFs::start();
    s3.create_bucket("backups");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("backups")
        .with_region("us-east-1")
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_access_key_id(S3S_ACCESS_KEY)
        .with_secret_access_key(S3S_SECRET_KEY)
        .build()
        .unwrap();
    let parts = S3Parts {
        s3: store.clone(),
        bucket_prefix: String::new(),
        ca_pem: None,
    };
    let key = Path::from("rp/a.pgdump");
    let id = parts.create(&key).await.unwrap();
    let url = parts.part_url(&key, &id, 1).await.unwrap();
    let http = reqwest::Client::new();
    let put = async |u: String| http.put(u).body(vec![7u8; 1024]).send().await.unwrap();
    let bent = [
        url.replace("/rp/a.pgdump", "/rp/other.pgdump"),
        url.replace("partNumber=1", "partNumber=2"),
        url.replace(
            &format!("uploadId={id}"),
            "uploadId=00000000-0000-0000-0000-000000000000",
        ),
    ];
    for u in bent {
        let r = put(u.clone()).await;
        assert_eq!(r.status().as_u16(), 403, "{u} was accepted");
    }
    let read = http.get(&url).send().await.unwrap();
    assert!(!read.status().is_success(), "the part URL could read");
    let r = put(url).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    parts.complete(&key, &id, vec![etag]).await.unwrap();
    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), vec![7u8; 1024].as_slice());
    assert!(
        store.head(&Path::from("rp/other.pgdump")).await.is_err(),
        "another key was written"
    );
}

/// A mover (`coffer mover run`, as in a mover pod) puts its parts to an S3 endpoint whose
/// certificate a private CA signed: it trusts the Profile's `spec.caFile`, which the daemon
/// hands it with the job, and without it the upload fails and is aborted.
#[tokio::test(flavor = "multi_thread")]
async fn a_mover_trusts_the_profiles_private_ca() {
    use coffer::cap::exec::mover::{Job, drive};
    use coffer::cap::exec::{BoxRead, BoxWrite, ExitInfo, RunningProcess};
    use coffer::storage::pipeline::Counters;
    use coffer::storage::presign::{PartSigner, S3Parts};
    use object_store::ObjectStoreExt;
    use object_store::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    struct Mover(tokio::process::Child);
    #[async_trait::async_trait]
    impl RunningProcess for Mover {
        fn take_stdin(&mut self) -> Option<BoxWrite> {
            self.0.stdin.take().map(|s| Box::pin(s) as BoxWrite)
        }
        fn take_stdout(&mut self) -> Option<BoxRead> {
            self.0.stdout.take().map(|s| Box::pin(s) as BoxRead)
        }
        async fn wait(&mut self) -> Result<ExitInfo, coffer::wit::WitError> {
            let s = self.0.wait().await.unwrap();
            Ok(ExitInfo {
                code: s.code(),
                signal: None,
                stderr: vec![],
            })
        }
        fn kill(&mut self) {
            let _ = self.0.start_kill();
        }
    }

    let s3 = S3sFs::start();
    s3.create_bucket("backups");
    let pki = coffer_tests::tls::Pki::new();
    let proxy = coffer_tests::tls::TlsProxy::start(&pki, s3.port);
    let ca = std::fs::read_to_string(pki.ca()).unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("backups")
        .with_region("us-east-1")
        .with_endpoint(proxy.endpoint())
        .with_access_key_id(S3S_ACCESS_KEY)
        .with_secret_access_key(S3S_SECRET_KEY)
        .with_client_options(
            object_store::ClientOptions::new()
                .with_root_certificate(object_store::Certificate::from_pem(ca.as_bytes()).unwrap()),
        )
        .build()
        .unwrap();
    for trusted in [false, true] {
        let parts = S3Parts {
            s3: store.clone(),
            bucket_prefix: String::new(),
            ca_pem: trusted.then(|| ca.clone()),
        };
        let job = Job {
            argv: vec!["printf".into(), "moved through a private CA".into()],
            env: vec![],
            zstd_level: None,
            recipients: vec![],
            profile: "private".into(),
            stderr_tail: 1024,
            ca_pem: parts.ca_pem(),
        };
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["mover", "run"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let key = Path::from(format!("rp/moved-{trusted}"));
        let counters = Counters {
            transfer: Arc::new(AtomicU64::new(0)),
            action: Arc::new(AtomicU64::new(0)),
        };
        let done = drive(
            Box::new(Mover(child)),
            &job,
            &parts,
            &key,
            &counters,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await;
        if trusted {
            assert!(done.is_ok(), "{:?}", done.err());
            let got = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.as_ref(), b"moved through a private CA");
        } else {
            let e = done.err().expect("the mover trusted an unknown CA");
            assert!(e.contains("part 1: error sending request"), "{e}");
            assert!(store.head(&key).await.is_err(), "an object without the CA");
        }
    }
}
