//! What a plugin leaves on the record: bounded whatever it sends (an audit flood must not
//! grow the catalog or coffer's memory without end), and never a secret value, wherever
//! the plugin puts it.

use super::common::{self, error_of};
use coffer::model::{Kind, Phase};
use coffer_tests::files_containing;

/// Run `coffer backup` in a child process; its peak RSS in KiB, and whether it succeeded.
fn backup_in_child(home: &std::path::Path, params: &[&str]) -> (i64, bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.arg("backup").arg("victim");
    for p in params {
        cmd.args(["-p", p]);
    }
    let child = cmd
        .env("COFFER_HOME", home)
        .env(
            "COFFER_CACHE_DIR",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let output = std::thread::spawn(move || {
        use std::io::Read;
        let mut child = child;
        let mut s = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut s);
        (child, s)
    });
    let (mut child, stderr) = output.join().unwrap();
    let mut status = 0;
    // SAFETY: plain syscalls on our own child; the rusage is written by the kernel.
    let rss = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut ru);
        ru.ru_maxrss
    };
    let _ = child.try_wait();
    (
        rss,
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stderr,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_flood_stays_bounded_in_memory_and_on_disk() {
    let f = common::fixture("exec: []", "{cpu: 120s}").await;
    // 2,000 refused calls naming a 1 MiB secret (audited: the name and the refusal), then
    // outputs and metadata values of half a megabyte: unbounded, 4 GB of record.
    let (rss_kib, ok, stderr) = backup_in_child(
        f.home.path(),
        &["mode=audit-flood", "bytes=1048576", "count=2000"],
    );
    assert!(ok, "{stderr}");
    let catalog = std::fs::metadata(f.home.path().join("catalog.db"))
        .unwrap()
        .len()
        + std::fs::metadata(f.home.path().join("catalog.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    eprintln!(
        "peak RSS {} MiB, catalog {} KiB",
        rss_kib / 1024,
        catalog / 1024
    );
    assert!(rss_kib < 600 * 1024, "peak RSS {} MiB", rss_kib / 1024);
    assert!(catalog < 8 << 20, "catalog {catalog} bytes");
    let sets: Vec<coffer::model::ActionSet> = f.coffer.catalog.list(Kind::ActionSet).unwrap();
    let a = f.coffer.action_set(sets[0].name()).unwrap();
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert!(a.status.audit_dropped > 0, "nothing was dropped");
    let audit_bytes: usize = a
        .status
        .audit
        .iter()
        .map(|e| e.target.len() + e.args.len() + e.result.len())
        .sum();
    assert!(audit_bytes <= 512 << 10, "{audit_bytes} bytes of audit");
    assert!(a.status.outputs.len() <= 64);
    assert!(a.status.outputs.values().all(|v| v.len() <= 4096));
    let rp = f
        .coffer
        .restore_point(a.status.restore_point.as_deref().unwrap())
        .unwrap();
    assert!(
        rp.spec.artifacts[0]
            .metadata
            .values()
            .all(|v| v.len() <= 4096)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_never_lands_in_the_record_or_the_manifest() {
    let f = common::fixture(r#"exec: ["COFFER_PW=* cat /proc/self/environ"]"#, "{}").await;
    let a = common::backup(&f, "secret-in-record").await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert!(
        a.status.outputs["refusedKey"].contains("contains one of the action's secret values"),
        "{:?}",
        a.status.outputs
    );
    assert_eq!(a.status.outputs["pw"], "[REDACTED]");
    let rp = f
        .coffer
        .restore_point(a.status.restore_point.as_deref().unwrap())
        .unwrap();
    let art = &rp.spec.artifacts[0];
    assert_eq!(art.name, "name-[REDACTED]");
    assert_eq!(art.metadata["pw"], "[REDACTED]");
    assert!(art.metadata.contains_key("key-[REDACTED]"));
    // Nowhere in the state dir: catalog, location, manifest.
    assert!(
        files_containing(f.home.path(), f.secret.as_bytes()).is_empty(),
        "{:?}",
        files_containing(f.home.path(), f.secret.as_bytes())
    );
    let _ = error_of;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_uploads_at_once_wait_for_slots_instead_of_memory() {
    let f = common::fixture(r#"exec: ["head -c * /dev/zero"], unsafeArgs: true"#, "{}").await;
    // 100 uploads of 32 MiB started together: each holds up to three 8 MiB parts.
    let (rss_kib, ok, stderr) = backup_in_child(
        f.home.path(),
        &["mode=many-puts", "bytes=33554432", "count=100"],
    );
    assert!(ok, "{stderr}");
    eprintln!("peak RSS {} MiB", rss_kib / 1024);
    assert!(rss_kib < 300 * 1024, "peak RSS {} MiB", rss_kib / 1024);
}
