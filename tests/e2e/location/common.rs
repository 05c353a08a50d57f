//! Shared by the location tests: the coffer CLI, the file-mover Blueprint, age keys, data
//! files, Profiles, and running a backup that is interrupted on purpose.

use coffer_tests::cli::{Cli, Run};
use coffer_tests::{random_hex, test_plugin};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

/// The test plugin `hostile` as a file mover: mode=file backs up / restores `path`.
pub fn setup(c: &Cli) {
    let yaml = format!(
        r#"apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {{name: mover}}
spec:
  plugin: {{path: {}}}
  grants: {{exec: ["cat **", "sh **", "head **"], unsafeArgs: true, location: [read, write, delete]}}
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

pub struct Keys {
    dir: tempfile::TempDir,
    pub recipient: String,
}

impl Keys {
    /// An age key pair made by the standard `age-keygen`.
    pub fn new() -> Keys {
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
    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("key.txt")
    }
}

/// A file of `n` bytes, half random and half repetitive (so zstd has work to do).
pub fn data_file(dir: &Path, n: usize) -> (PathBuf, String) {
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

pub fn sha256_file(p: &Path) -> String {
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

pub fn secret_files(dir: &Path, id: &str, key: &str) -> (PathBuf, PathBuf) {
    let tag = random_hex(4);
    let (a, b) = (dir.join(format!("ak-{tag}")), dir.join(format!("sk-{tag}")));
    std::fs::write(&a, format!("{id}\n")).unwrap();
    std::fs::write(&b, format!("{key}\n")).unwrap();
    (a, b)
}

pub fn s3_profile(
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

pub fn backup(c: &Cli, profile: &str, params: &[&str]) -> Run {
    let mut args = vec!["backup", "files", "--profile", profile, "-o", "json"];
    for p in params {
        args.extend(["-p", p]);
    }
    c.run(&args)
}

pub fn restore_point_of(r: &Run) -> String {
    assert!(r.ok, "backup failed:\n{}\n{}", r.stdout, r.stderr);
    r.json()["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn restore_points(c: &Cli) -> Vec<serde_json::Value> {
    c.ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// Start a backup of `bytes` random bytes (the test plugin's stream mode) and return the
/// running coffer, for a test that breaks something in the middle of it.
pub fn spawn_stream_backup(c: &Cli, profile: &str, bytes: u64) -> std::process::Child {
    c.command()
        .args([
            "backup",
            "files",
            "--profile",
            profile,
            "-p",
            "mode=stream",
            "-o",
            "json",
        ])
        .arg("-p")
        .arg(format!("bytes={bytes}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Poll `ready` every 20 ms for up to a minute.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a backup that must fail: its final ActionSet (-o json) and its stderr.
pub fn failed_actionset(child: std::process::Child) -> (serde_json::Value, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the backup succeeded:\n{stderr}");
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["status"]["phase"], "Failed", "{a}");
    (a, stderr)
}

/// `coffer restore files --from RP` of the file mover into `dst`.
pub fn restore_file(c: &Cli, rp: &str, dst: &Path) {
    c.ok(&[
        "restore",
        "files",
        "--from",
        rp,
        "-p",
        "mode=file",
        "-p",
        &format!("path={}", dst.display()),
    ]);
}
