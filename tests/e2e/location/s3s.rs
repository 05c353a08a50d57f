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
