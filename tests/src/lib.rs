//! Support for coffer's end-to-end tests: launchers for the real servers the tests use, the
//! `coffer` CLI driven as a user would, and the test plugins.

pub mod btrfs;
pub mod cassandra;
pub mod cli;
pub mod http;
pub mod kafka;
pub mod kube_real;
pub mod kube_sim;
pub mod medusa_operator;
pub mod pgbackrest;
pub mod pgo;
pub mod postgres;
pub mod rbac;
pub mod s3;
pub mod sdk_reference;
pub mod servers;
pub mod tls;
pub mod webdriver;

/// The Kubernetes client the simulator's tests (and, later, coffer's kube backend) use.
pub use k8s_openapi;
pub use kube;

use std::path::PathBuf;
use std::sync::OnceLock;

/// The Debian packages the tests need (PostgreSQL 15, MariaDB, etcd, Redis, age, zstd, npm,
/// python3-venv, openssl, curl): installed by scripts/test-packages.sh the first time a test process needs
/// them, so `cargo test` is all the set-up (the script locks, and installs only what is
/// missing). The server launchers and the test plugins call it.
pub fn ensure_packages() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-packages.sh");
        match std::process::Command::new(&script).status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!(
                "{} failed ({s}); see its output above for the packages to install",
                script.display()
            )),
            Err(e) => Err(format!("running {}: {e}", script.display())),
        }
    });
    if let Err(e) = done {
        panic!("{e}");
    }
}

/// A `cargo` command for a build of its own inside a test (a plugin crate, the plugins
/// workspace): without what the outer cargo set for its own build (flags, wrappers, target
/// dir, jobserver), which are not this build's.
pub fn cargo() -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Run installer `script` of scripts/ (kafka.sh, cassandra.sh) once per test process, with
/// COFFER_TOOLS set: it installs what is missing under ~/.cache/coffer-tools and does
/// nothing when all is there.
pub fn install_once(script: &'static str) {
    static DONE: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if done.contains(&script) {
        return;
    }
    ensure_packages();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let status = std::process::Command::new(&path)
        .env("COFFER_TOOLS", s3::tools_dir())
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(status.success(), "{} failed", path.display());
    done.push(script);
}

/// Stop server process `pid` (and remove `dir`) when this test process ends, however it
/// ends: Drop covers a passing or panicking test, not a test binary killed by a timeout or
/// a signal, which would otherwise leave the server running. A detached shell polls.
pub fn reap_with_this_process(pid: u32, dir: Option<&std::path::Path>) {
    let dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
    // The server's start time (field 22 of /proc/PID/stat): a pid reused by another
    // process after the server stopped is never killed.
    let started = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_comm = stat.rsplit_once(')')?.1;
        after_comm.split_whitespace().nth(19).map(String::from)
    };
    let Some(start) = started(pid) else { return };
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
now=$(sed 's/.*) //' "/proc/$2/stat" 2>/dev/null | cut -d' ' -f20)
[ "$now" = "$4" ] && kill -9 "$2" 2>/dev/null
[ -n "$3" ] && rm -rf "$3"
exit 0"#;
    let spawned = std::process::Command::new("setsid")
        .args(["-f", "sh", "-c", script, "reaper"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(dir)
        .arg(start)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(e) = spawned {
        eprintln!("warning: no reaper for server pid {pid}: {e}");
    }
}

/// A test plugin (tests/plugins) built for wasm32-wasip2, by crate file stem.
pub fn test_plugin(stem: &str) -> PathBuf {
    ensure_packages();
    PathBuf::from(env!("COFFER_TEST_PLUGINS")).join(format!("{stem}.wasm"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    // The OS may hand the same port to two calls in a row once the first is released (a
    // server's client and peer ports then clash): never give one out twice per process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Random lowercase hex, for names and passwords.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("reading /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every file under `dir`, recursively, sorted.
/// Every file under `dir` with its bytes, by path relative to `dir` (sorted, as
/// [`files_under`] lists them): a whole tree
/// to compare with another.
pub fn tree_contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            (
                f.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&f).unwrap(),
            )
        })
        .collect()
}

pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

/// Run to its end; wall seconds and the peak RSS in MiB of the largest process of its tree
/// (each waited for by its parent, so wait4 sees them).
// The child is reaped by wait4 (which also gives its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
pub fn measure(cmd: &mut std::process::Command) -> (f64, f64) {
    let t = std::time::Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut status = 0;
    // SAFETY: plain libc wait4 on our own child; the rusage is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    (t.elapsed().as_secs_f64(), usage.ru_maxrss as f64 / 1024.0)
}
