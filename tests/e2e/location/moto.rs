//! moto: encryption, verify, Object Lock, location commands, faults, a cut network.

use super::common::*;
use coffer_tests::s3::{Moto, Proxy, http};
use std::time::Duration;

#[test]
fn moto_encrypted_round_trip_verify_object_lock_and_faults() {
    let moto = Moto::start();
    moto.create_bucket("backups", false);
    moto.create_bucket("locked", true);
    let c = cli();
    setup(&c);
    let work = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let other = Keys::new();
    let creds = secret_files(work.path(), "moto", "moto-secret");
    let enc = format!(
        "  prefix: team-a\n  encryption: {{recipients: [{}], identity: {{file: {}}}}}\n",
        keys.recipient,
        keys.identity().display()
    );
    let wrong = format!(
        "  prefix: team-a\n  encryption: {{recipients: [{}], identity: {{file: {}}}}}\n",
        keys.recipient,
        other.identity().display()
    );
    let lock = "  encryption: none\n  objectLock: {mode: governance, days: 2}\n";
    let yaml = [
        s3_profile("enc", &moto.endpoint(), "backups", &creds, &enc),
        s3_profile("wrong-key", &moto.endpoint(), "backups", &creds, &wrong),
        s3_profile("locked", &moto.endpoint(), "locked", &creds, lock),
        s3_profile("no-lock", &moto.endpoint(), "backups", &creds, lock),
        s3_profile(
            "missing",
            &moto.endpoint(),
            "no-such-bucket",
            &creds,
            "  encryption: none\n",
        ),
    ]
    .join("---\n");
    let applied = c.apply(&yaml);
    assert!(applied.ok, "{}", applied.stderr);

    // A remote Profile without an encryption choice is refused at apply.
    let r = c.apply(&s3_profile(
        "plain",
        &moto.endpoint(),
        "backups",
        &creds,
        "",
    ));
    assert!(
        !r.ok && r.stderr.contains("spec.encryption is required"),
        "{}",
        r.stderr
    );

    // validate: every permission probed and reported.
    let v = c.ok(&["profile", "validate", "enc", "-o", "json"]).json();
    let checks: Vec<(String, bool)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    for want in ["LIST", "PUT", "GET", "DELETE", "encryption"] {
        assert!(checks.contains(&(want.to_string(), true)), "{want}: {v}");
    }
    let missing = c.run(&["profile", "validate", "missing"]);
    assert!(!missing.ok);
    assert!(
        missing.stdout.contains("NoSuchBucket"),
        "{}",
        missing.stdout
    );
    assert!(
        missing.stdout.contains("PUT          FAIL"),
        "{}",
        missing.stdout
    );

    // Encrypted backup: the stored object is standard age, then zstd.
    let (src, sum) = data_file(work.path(), 12 << 20);
    let b = backup(
        &c,
        "enc",
        &["mode=file", &format!("path={}", src.display())],
    );
    let rp = restore_point_of(&b);
    let keys_in_bucket = moto.keys("backups");
    let data_key = keys_in_bucket
        .iter()
        .find(|k| k.ends_with("file.bin.zst.age"))
        .unwrap_or_else(|| panic!("no encrypted object in {keys_in_bucket:?}"))
        .clone();
    assert!(
        data_key.starts_with(&format!("team-a/restorepoints/files/{rp}/")),
        "{data_key}"
    );
    let stored = moto.get("backups", &data_key);
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    let raw = work.path().join("raw.age");
    std::fs::write(&raw, &stored).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i {} {} | zstd -dc | sha256sum",
            keys.identity().display(),
            raw.display()
        ))
        .output()
        .unwrap();
    let standard = String::from_utf8_lossy(&out.stdout);
    assert!(
        standard.starts_with(&sum),
        "age -d | zstd -d gave {standard} (stderr {})",
        String::from_utf8_lossy(&out.stderr)
    );

    // location ls sees it, relative to the Profile's prefix.
    let ls = c.ok(&["location", "ls", "--profile", "enc", "restorepoints/files"]);
    assert!(
        ls.stdout
            .contains(&format!("restorepoints/files/{rp}/file.bin.zst.age")),
        "{}",
        ls.stdout
    );
    assert!(ls.stdout.contains("coffer-manifest.json"), "{}", ls.stdout);

    // location cat takes the key the plugin wrote (stored as file.bin.zst.age) and decodes
    // it; a key that is not there says what it tried and where to look.
    let plugin_key = format!("restorepoints/files/{rp}/file.bin");
    let cat = c
        .command()
        .args(["location", "cat", "--profile", "enc", &plugin_key])
        .output()
        .unwrap();
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert!(
        cat.stdout == std::fs::read(&src).unwrap(),
        "location cat {plugin_key} differs from the source"
    );
    let nothing = c.run(&[
        "location",
        "cat",
        "--profile",
        "enc",
        &format!("restorepoints/files/{rp}/nothing"),
    ]);
    assert!(
        !nothing.ok
            && nothing.stderr.contains(".zst")
            && nothing.stderr.contains(&format!(
                "coffer location ls --profile enc restorepoints/files/{rp}"
            )),
        "{}",
        nothing.stderr
    );

    // location cat / rm: a plain object written behind coffer's back, then removed; the
    // objects of a RestorePoint are refused without --force.
    moto.put(
        "backups",
        "team-a/scratch/notes.txt",
        b"hello from outside\n",
    );
    let cat = c.ok(&["location", "cat", "--profile", "enc", "scratch/notes.txt"]);
    assert_eq!(cat.stdout, "hello from outside\n");
    let rm = c.ok(&["location", "rm", "--profile", "enc", "-r", "scratch"]);
    assert!(
        rm.stdout.contains("removed scratch/notes.txt"),
        "{}",
        rm.stdout
    );
    assert!(!moto.keys("backups").iter().any(|k| k.contains("scratch")));
    let refused = c.run(&[
        "location",
        "rm",
        "--profile",
        "enc",
        "-r",
        "restorepoints/files",
    ]);
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains(&format!("holds objects of RestorePoint {rp}")),
        "{}",
        refused.stderr
    );
    assert!(
        moto.keys("backups")
            .iter()
            .any(|k| k.ends_with("file.bin.zst.age"))
    );

    // verify reads everything end to end.
    let v = c.ok(&["verify", &rp]);
    assert!(
        v.stdout.contains("verified") && v.stdout.contains("decrypted, decompressed"),
        "{}",
        v.stdout
    );

    // Restore into a new file: identical bytes.
    let dst = work.path().join("restored.bin");
    let r = c.run(&[
        "restore",
        "files",
        "--from",
        &rp,
        "-p",
        "mode=file",
        "-p",
        &format!("path={}", dst.display()),
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(sha256_file(&dst), sum);

    // A wrong identity: a clear error, and nothing written. (Same recipients, so the
    // backup works; the identity is another key.)
    let dst2 = work.path().join("wrong.bin");
    let wr = {
        let c2 = cli();
        setup(&c2);
        assert!(c2.apply(&yaml).ok);
        let b2 = backup(
            &c2,
            "wrong-key",
            &["mode=file", &format!("path={}", src.display())],
        );
        let rp2 = restore_point_of(&b2);
        let v = c2.run(&["verify", &rp2]);
        assert!(!v.ok);
        assert!(
            v.stdout.contains("is not one of the recipients"),
            "{}",
            v.stdout
        );
        c2.run(&[
            "restore",
            "files",
            "--from",
            &rp2,
            "-p",
            "mode=file",
            "-p",
            &format!("path={}", dst2.display()),
        ])
    };
    assert!(!wr.ok);
    assert!(
        wr.stderr.contains("is not one of the recipients"),
        "{}",
        wr.stderr
    );
    assert!(
        !dst2.exists(),
        "a restore that could not decrypt wrote its target"
    );

    // A flipped byte in the stored object: verify and restore refuse with a checksum error.
    let mut bytes = stored.clone();
    bytes[100_000] ^= 0x01;
    moto.put("backups", &data_key, &bytes);
    let v = c.run(&["verify", &rp]);
    assert!(!v.ok);
    assert!(v.stdout.contains("checksum mismatch"), "{}", v.stdout);
    let dst3 = work.path().join("tampered-restore.bin");
    let r = c.run(&[
        "restore",
        "files",
        "--from",
        &rp,
        "-p",
        "mode=file",
        "-p",
        &format!("path={}", dst3.display()),
    ]);
    assert!(!r.ok);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert!(!dst3.exists());

    // Object Lock: every object of the backup, manifest included, carries retention.
    let b = backup(
        &c,
        "locked",
        &["mode=file", &format!("path={}", src.display())],
    );
    let rp_locked = restore_point_of(&b);
    let locked_keys = moto.keys("locked");
    assert_eq!(locked_keys.len(), 2, "{locked_keys:?}");
    for k in &locked_keys {
        assert!(k.contains(&rp_locked));
        let h = moto.head("locked", k);
        assert!(h.contains("x-amz-object-lock-mode: governance"), "{k}: {h}");
        assert!(
            h.contains("x-amz-object-lock-retain-until-date"),
            "{k}: {h}"
        );
    }
    // ... and a Profile asking for it on a bucket without it is refused before writing.
    let before = moto.keys("backups").len();
    let r = backup(
        &c,
        "no-lock",
        &["mode=file", &format!("path={}", src.display())],
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("does not have Object Lock enabled"),
        "{}",
        r.stderr
    );
    assert_eq!(moto.keys("backups").len(), before);

    // A missing bucket: the backup fails naming it, and records nothing.
    let n = restore_points(&c).len();
    let r = backup(
        &c,
        "missing",
        &["mode=file", &format!("path={}", src.display())],
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("NoSuchBucket"), "{}", r.stderr);
    assert_eq!(restore_points(&c).len(), n);
    assert!(moto.open_uploads("backups").is_empty());
}

#[test]
fn moto_network_cut_mid_upload_leaves_nothing_after_cleanup() {
    let moto = Moto::start();
    moto.create_bucket("backups", false);
    let proxy = Proxy::start(moto.port);
    let c = cli();
    setup(&c);
    let work = tempfile::tempdir().unwrap();
    let creds = secret_files(work.path(), "moto", "moto-secret");
    let yaml = s3_profile(
        "cut",
        &proxy.endpoint(),
        "backups",
        &creds,
        "  encryption: none\n  compression: none\n",
    );
    assert!(c.apply(&yaml).ok);

    let child = spawn_stream_backup(&c, "cut", 400_000_000);
    // Cut the network once an upload is open and a part has been sent.
    wait_until("no upload started", || {
        http(moto.port, "GET", "/backups?uploads", &[])
            .2
            .contains("<UploadId>")
    });
    std::thread::sleep(Duration::from_millis(1500));
    proxy.cut();
    let (a, stderr) = failed_actionset(child);
    assert!(a["status"].get("restorePoint").is_none());
    assert_eq!(a["status"]["cleanupPending"], true, "{a}");
    assert!(stderr.contains("could not be removed yet"), "{stderr}");
    // The abort could not reach the server: the upload is still open there.
    assert_eq!(moto.open_uploads("backups").len(), 1);
    assert!(restore_points(&c).is_empty());

    // The network is back: the next coffer command aborts what the failed backup left.
    proxy.resume();
    let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
    let failed = &sets.as_array().unwrap()[0];
    assert!(failed["status"].get("cleanupPending").is_none(), "{failed}");
    assert!(
        moto.open_uploads("backups").is_empty(),
        "{:?}",
        moto.open_uploads("backups")
    );
    assert!(moto.keys("backups").is_empty());

    // And a new backup goes through and verifies.
    let (src, _) = data_file(work.path(), 3 << 20);
    let rp = restore_point_of(&backup(
        &c,
        "cut",
        &["mode=file", &format!("path={}", src.display())],
    ));
    c.ok(&["verify", &rp]);
}
