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
    c.ok(&[
        "restore",
        "files",
        "--from",
        &rp,
        "-p",
        "mode=file",
        "-p",
        &format!("path={}", dst.display()),
    ]);
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
    c.ok(&[
        "restore",
        "files",
        "--from",
        &rp2,
        "-p",
        "mode=file",
        "-p",
        &format!("path={}", dst2.display()),
    ]);
    assert_eq!(sha256_file(&dst2), sum2);
    let leftover = bucket_dir.join(&failed_prefix);
    let files: Vec<_> = coffer_tests::files_under(&leftover);
    assert!(
        files.is_empty(),
        "objects of the failed backup remain: {files:?}"
    );
}
