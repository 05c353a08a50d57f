//! End-to-end: S3 locations against two real S3 protocol servers (moto and s3s-fs), age
//! encryption, Object Lock, `coffer verify`, `coffer profile validate`, `coffer location`,
//! and the faults a remote location has: a missing bucket, bad credentials, a server that
//! dies in the middle of an upload, a flipped byte, a wrong age identity.

use coffer_tests::cli::{Cli, Run};
use coffer_tests::s3::{
    AZURITE_ACCOUNT, AZURITE_KEY, Azurite, Moto, Proxy, S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs, http,
};
use coffer_tests::{random_hex, test_plugin};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

/// The test plugin `hostile` as a file mover: mode=file backs up / restores `path`.
fn setup(c: &Cli) {
    let yaml = format!(
        r#"apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {{name: mover}}
spec:
  plugin: {{path: {}}}
  grants: {{exec: ["cat **", "sh **", "head **"], location: [read, write, delete]}}
---
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {{name: files}}
spec: {{blueprint: mover}}
"#,
        test_plugin("hostile").display()
    );
    c.apply(&yaml);
}

struct Keys {
    dir: tempfile::TempDir,
    recipient: String,
}

impl Keys {
    /// An age key pair made by the standard `age-keygen`.
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(dir.path().join("key.txt"))
            .output()
            .expect("age-keygen (apt-get install age)");
        assert!(out.status.success());
        let text = std::fs::read_to_string(dir.path().join("key.txt")).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap()
            .to_string();
        Keys { dir, recipient }
    }
    fn identity(&self) -> PathBuf {
        self.dir.path().join("key.txt")
    }
}

/// A file of `n` bytes, half random and half repetitive (so zstd has work to do).
fn data_file(dir: &Path, n: usize) -> (PathBuf, String) {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b[..n / 2])
        .unwrap();
    for (i, x) in b[n / 2..].iter_mut().enumerate() {
        *x = b"coffer location test "[i % 21];
    }
    let p = dir.join(format!("data-{}.bin", random_hex(4)));
    std::fs::write(&p, &b).unwrap();
    let sum = sha256_file(&p);
    (p, sum)
}

fn sha256_file(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn secret_files(dir: &Path, id: &str, key: &str) -> (PathBuf, PathBuf) {
    let tag = random_hex(4);
    let (a, b) = (dir.join(format!("ak-{tag}")), dir.join(format!("sk-{tag}")));
    std::fs::write(&a, format!("{id}\n")).unwrap();
    std::fs::write(&b, format!("{key}\n")).unwrap();
    (a, b)
}

fn s3_profile(
    name: &str,
    endpoint: &str,
    bucket: &str,
    creds: &(PathBuf, PathBuf),
    extra: &str,
) -> String {
    format!(
        r#"apiVersion: coffer.dev/v1alpha1
kind: Profile
metadata: {{name: {name}}}
spec:
  type: s3
  bucket: {bucket}
  endpoint: {endpoint}
  retries: 2
  retryTimeout: 5s
  credentials: {{accessKeyId: {{file: {}}}, secretAccessKey: {{file: {}}}}}
{extra}"#,
        creds.0.display(),
        creds.1.display()
    )
}

fn backup(c: &Cli, profile: &str, params: &[&str]) -> Run {
    let mut args = vec!["backup", "files", "--profile", profile, "-o", "json"];
    for p in params {
        args.extend(["-p", p]);
    }
    c.run(&args)
}

fn restore_point_of(r: &Run) -> String {
    assert!(r.ok, "backup failed:\n{}\n{}", r.stdout, r.stderr);
    r.json()["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn restore_points(c: &Cli) -> Vec<serde_json::Value> {
    c.ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

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

    let child = c
        .command()
        .args([
            "backup",
            "files",
            "--profile",
            "cut",
            "-p",
            "mode=stream",
            "-p",
            "bytes=400000000",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Cut the network once an upload is open and a part has been sent.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = http(moto.port, "GET", "/backups?uploads", &[]);
        if body.contains("<UploadId>") {
            std::thread::sleep(Duration::from_millis(1500));
            break;
        }
        assert!(Instant::now() < deadline, "no upload started");
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.cut();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the backup succeeded through a cut network"
    );
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["status"]["phase"], "Failed");
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
    let child = c
        .command()
        .args([
            "backup",
            "files",
            "--profile",
            "s3s",
            "-p",
            "mode=stream",
            "-p",
            "bytes=2000000000",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parts = std::fs::read_dir(s3.root.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"));
        if parts {
            break;
        }
        assert!(Instant::now() < deadline, "no part was uploaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    s3.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["status"]["phase"], "Failed", "{a}");
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

#[test]
fn azure_blob_on_azurite_round_trip_encrypted_and_bad_key() {
    let az = Azurite::start();
    az.create_container("backups");
    let c = cli();
    setup(&c);
    let work = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let key = work.path().join("azure-key");
    std::fs::write(&key, format!("{AZURITE_KEY}\n")).unwrap();
    let bad = work.path().join("azure-bad-key");
    // A valid base64 key, but not the account's.
    std::fs::write(&bad, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n").unwrap();
    let profile = |name: &str, keyfile: &Path| {
        format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {{name: {name}}}\nspec:\n  type: azure\n  account: {AZURITE_ACCOUNT}\n  container: backups\n  prefix: prod\n  endpoint: {}\n  retries: 1\n  retryTimeout: 5s\n  credentials: {{accessKey: {{file: {}}}}}\n  encryption: {{recipients: [{}], identity: {{file: {}}}}}\n",
            az.endpoint(),
            keyfile.display(),
            keys.recipient,
            keys.identity().display()
        )
    };
    assert!(
        c.apply(&format!(
            "{}---\n{}",
            profile("az", &key),
            profile("az-bad", &bad)
        ))
        .ok
    );
    let v = c.ok(&["profile", "validate", "az", "-o", "json"]).json();
    assert_eq!(v["ok"], true, "{v}");
    let badv = c.run(&["profile", "validate", "az-bad"]);
    assert!(!badv.ok);
    assert!(badv.stdout.contains("LIST         FAIL"), "{}", badv.stdout);

    let (src, sum) = data_file(work.path(), 20 << 20);
    let rp = restore_point_of(&backup(
        &c,
        "az",
        &["mode=file", &format!("path={}", src.display())],
    ));
    let blobs = az.blobs("backups");
    assert!(
        blobs.contains(&format!("prod/restorepoints/files/{rp}/file.bin.zst.age")),
        "{blobs:?}"
    );
    assert!(
        blobs.contains(&format!(
            "prod/restorepoints/files/{rp}/coffer-manifest.json"
        )),
        "{blobs:?}"
    );
    c.ok(&["verify", &rp]);
    let dst = work.path().join("az-restored.bin");
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

    // The wrong key: refused by the server, nothing recorded.
    let n = restore_points(&c).len();
    let r = backup(
        &c,
        "az-bad",
        &["mode=file", &format!("path={}", src.display())],
    );
    assert!(!r.ok);
    assert_eq!(restore_points(&c).len(), n);
    // Its cleanup cannot succeed with that key either: later commands try a few times,
    // then give up with a note saying how to do it by hand.
    let failed = r.json()["metadata"]["name"].as_str().unwrap().to_string();
    for _ in 0..5 {
        c.ok(&["get", "actionsets"]);
    }
    let a = c.ok(&["get", "actionset", &failed, "-o", "json"]).json();
    assert!(a["status"].get("cleanupPending").is_none(), "{a}");
    assert!(
        a["status"]["error"]
            .as_str()
            .unwrap()
            .contains("gave up removing what it left"),
        "{a}"
    );

    // Delete removes every blob of the restore point.
    c.ok(&["delete", &rp]);
    let left: Vec<String> = az
        .blobs("backups")
        .into_iter()
        .filter(|b| b.contains(&rp))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
