//! Support for coffer's end-to-end tests: launchers for the real servers the tests use, the
//! `coffer` CLI driven as a user would, and the test plugins.

pub mod cli;
pub mod kube_sim;
pub mod postgres;
pub mod rbac;
pub mod s3;
pub mod servers;

/// The Kubernetes client the simulator's tests (and, later, coffer's kube backend) use.
pub use k8s_openapi;
pub use kube;

use std::path::PathBuf;

/// A test plugin (tests/plugins) built for wasm32-wasip2, by crate file stem.
pub fn test_plugin(stem: &str) -> PathBuf {
    PathBuf::from(env!("COFFER_TEST_PLUGINS")).join(format!("{stem}.wasm"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().unwrap().port()
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
