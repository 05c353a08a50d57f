//! A plugin that misbehaves is stopped with a precise error, leaves nothing behind, and the
//! same host (one process, one engine) runs the next action fine. In-process, through the
//! library, so "the host stays healthy" means this very host.

use coffer::action::{ActionRequest, Coffer};
use coffer::home::Home;
use coffer::model::{ActionSet, Phase};
use coffer_tests::{files_containing, files_under, test_plugin};

#[path = "common/hostile.rs"]
mod common;
use common::{Fixture, error_of, still_healthy};

/// cat and head run with any arguments here on purpose: the sandbox is what is tested.
const GRANTS: &str = r#"exec: ["echo **", "COFFER_PW=* cat **", "head **"], unsafeArgs: true"#;

async fn fixture(limits: &str) -> Fixture {
    common::fixture(GRANTS, limits).await
}

async fn backup(f: &Fixture, mode: &str) -> ActionSet {
    common::backup(f, mode).await
}

const LIMITS: &str = "{memory: 64Mi, cpu: 2s, timeouts: {backup: 60s}}";

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_fails_the_action_not_the_host() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "trap").await;
    assert!(
        error_of(&a).contains("the plugin crashed (trap)"),
        "{}",
        error_of(&a)
    );
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_loop_hits_the_cpu_limit() {
    let f = fixture(LIMITS).await;
    let started = std::time::Instant::now();
    let a = backup(&f, "loop").await;
    let e = error_of(&a);
    assert!(
        e.contains("guest CPU limit of 2s") && e.contains("spec.limits.cpu"),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_loop_hits_the_wall_clock_deadline() {
    let f = fixture("{cpu: 600s, timeouts: {backup: 1s}}").await;
    let a = backup(&f, "loop").await;
    let e = error_of(&a);
    assert!(
        e.contains("deadline of 1s") && e.contains("spec.limits.timeouts.backup"),
        "{e}"
    );
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_allocation_hits_the_memory_limit() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "alloc").await;
    let e = error_of(&a);
    assert!(
        e.contains("memory limit of 64 MiB") && e.contains("spec.limits.memory"),
        "{e}"
    );
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_that_is_declared_but_not_granted_is_denied() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "exec-not-granted").await;
    let e = error_of(&a);
    assert!(
        e.contains("denied") && e.contains("`sh`") && e.contains("spec.grants.exec"),
        "{e}"
    );
    let denied = a
        .status
        .audit
        .iter()
        .find(|x| x.capability == "exec.run")
        .expect("audited");
    assert!(denied.result.starts_with("denied"), "{denied:?}");
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_cannot_leave_the_prefix() {
    let f = fixture(LIMITS).await;
    // By value and as a stream the plugin writes.
    for mode in ["escape-key", "escape-stream"] {
        let a = backup(&f, mode).await;
        let e = error_of(&a);
        assert!(
            e.contains("invalid argument") && e.contains("'..'"),
            "{mode}: {e}"
        );
    }
    // No object named `escape` anywhere in the state dir, nor beside it.
    let escaped: Vec<_> = files_under(f.home.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "escape"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    assert!(!f.home.path().parent().unwrap().join("escape").exists());
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_writing_leaves_no_objects() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "fail-after-write").await;
    assert!(error_of(&a).contains("deliberate failure after writing"));
    assert!(
        a.status
            .audit
            .iter()
            .any(|x| x.capability == "transfer.put" && x.result == "ok"),
        "the object was written first"
    );
    let loc = f.home.path().join("locations/default/restorepoints/victim");
    let left: Vec<_> = std::fs::read_dir(&loc)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_clean_trap() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "recurse").await;
    let e = error_of(&a);
    assert!(
        e.contains("the plugin crashed (trap)") && e.contains("stack"),
        "{e}"
    );
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_in_the_middle_of_a_transfer_leaves_nothing() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "trap-mid-transfer").await;
    assert!(error_of(&a).contains("trap"), "{}", error_of(&a));
    let left = files_under(&f.home.path().join("locations"));
    assert!(left.is_empty(), "left behind: {left:?}");
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_a_log_line_is_redacted() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "leak-in-log").await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    let line = a
        .status
        .logs
        .iter()
        .find(|l| l.message.starts_with("environment:"))
        .expect("the log line");
    assert!(
        line.message.contains("COFFER_PW=[REDACTED]") && line.fields["env"].contains("[REDACTED]"),
        "{line:?}"
    );
    assert!(
        files_containing(f.home.path(), f.secret.as_bytes()).is_empty(),
        "secret in the state dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_process_reports_the_end_of_its_stderr() {
    let f = fixture(LIMITS).await;
    let e = error_of(&backup(&f, "exec-fails").await).to_string();
    assert!(
        e.contains("cat") && e.contains("/nonexistent/coffer-test: No such file or directory"),
        "{e}"
    );
    let f = fixture("{stderrTail: 16}").await;
    let e = error_of(&backup(&f, "exec-fails").await).to_string();
    assert!(
        e.contains("or directory") && !e.contains("/nonexistent"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hoarding_handles_hits_the_handle_limit() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "handles").await;
    let e = error_of(&a);
    assert!(
        e.contains("handle limit of 1024") && e.contains("spec.limits.handles"),
        "{e}"
    );
    still_healthy(&f).await;
    // The Blueprint can lower (or raise) it.
    let f = fixture("{handles: 64}").await;
    let e = error_of(&backup(&f, "handles").await).to_string();
    assert!(e.contains("handle limit of 64"), "{e}");
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_importing_filesystem_or_sockets_is_refused_before_it_runs() {
    let home = tempfile::tempdir().unwrap();
    let coffer = Coffer::open(Home::resolve(Some(home.path().to_path_buf())).unwrap())
        .await
        .unwrap();
    let yaml = format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: fs}}\nspec:\n  plugin: {{path: {}}}\n",
        test_plugin("fs_reader").display()
    );
    let err = format!("{:#}", coffer.apply("test", &yaml).unwrap_err());
    assert!(
        err.contains("may not use")
            && err.contains("wasi:filesystem/")
            && err.contains("wasi:sockets/"),
        "{err}"
    );
    assert!(
        coffer
            .blueprints()
            .unwrap()
            .iter()
            .all(|(b, _)| b.name() != "fs"),
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_capped_and_counted() {
    // Guest CPU is counted in 10 ms ticks in which guest code ran; a guest that calls the host
    // 200,000 times runs in nearly every tick, so give it room.
    let f = fixture("{cpu: 120s}").await;
    let a = backup(&f, "log-flood").await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert_eq!(a.status.logs.len(), 1000);
    assert_eq!(a.status.logs_dropped, 199_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_output_is_capped() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "stdout-flood").await;
    let e = error_of(&a);
    assert!(
        e.contains("limit") && e.contains("16777216 bytes") && e.contains("location.put"),
        "{e}"
    );
    let f = fixture("{capturedOutput: 1Mi}").await;
    let e = error_of(&backup(&f, "stdout-flood").await).to_string();
    assert!(
        e.contains("1048576 bytes") && e.contains("spec.limits.capturedOutput"),
        "{e}"
    );
    still_healthy(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_printed_by_a_process_is_redacted_everywhere() {
    let f = fixture(LIMITS).await;
    let a = backup(&f, "leak-secret").await;
    let e = error_of(&a);
    assert!(e.contains("COFFER_PW=[REDACTED]"), "{e}");
    assert!(!e.contains(&f.secret));
    let record = serde_json::to_string(&a).unwrap();
    assert!(!record.contains(&f.secret), "secret in the ActionSet");
    assert!(
        files_containing(f.home.path(), f.secret.as_bytes()).is_empty(),
        "secret in the state dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blueprint_can_require_a_signed_plugin() {
    use coffer::plugin::{PluginBytes, signing};
    let dir = tempfile::tempdir().unwrap();
    let (key, other) = (dir.path().join("key"), dir.path().join("other"));
    let public = signing::keygen(&key).unwrap();
    let other_public = signing::keygen(&other).unwrap();
    let plugin = test_plugin("hostile");
    let bytes = PluginBytes::new("hostile".into(), std::fs::read(&plugin).unwrap());
    let sig = dir.path().join("hostile.sig");
    std::fs::write(&sig, signing::sign(&bytes.sha256, &key).unwrap()).unwrap();

    let home = tempfile::tempdir().unwrap();
    let coffer = Coffer::open(Home::resolve(Some(home.path().to_path_buf())).unwrap())
        .await
        .unwrap();
    let blueprint = |pk: &str| {
        format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: signed}}\nspec:\n  plugin: {{path: {}, publicKey: {pk}, signature: {}}}\n  grants: {{location: [read, write]}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: w}}\nspec: {{blueprint: signed}}\n",
            plugin.display(),
            sig.display()
        )
    };
    let err = format!(
        "{:#}",
        coffer.apply("test", &blueprint(&other_public)).unwrap_err()
    );
    assert!(
        err.contains("failed signature verification") && err.contains("does not match"),
        "{err}"
    );

    coffer.apply("test", &blueprint(&public)).unwrap();
    let req = ActionRequest {
        action: "backup".into(),
        workload: Some("w".into()),
        ..Default::default()
    };
    let p = coffer.prepare(req).await.unwrap();
    assert_eq!(coffer.run(&p).await.unwrap().status.phase, Phase::Completed);

    // A signature that no longer matches (the plugin file was swapped) stops the next action.
    std::fs::write(&sig, signing::sign(&"00".repeat(32), &key).unwrap()).unwrap();
    let req = ActionRequest {
        action: "backup".into(),
        workload: Some("w".into()),
        ..Default::default()
    };
    let err = format!("{:#}", coffer.prepare(req).await.err().expect("refused"));
    assert!(err.contains("failed signature verification"), "{err}");
}

/// A tmpfs of a given size, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs failed");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_location_that_fills_up_fails_the_backup_and_keeps_nothing() {
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = SmallDisk::mount("2m");
    let f = fixture(LIMITS).await;
    let yaml = format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {{name: small}}\nspec: {{type: file, path: {}}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: victim}}\nspec: {{blueprint: hostile, profile: small}}\n",
        disk.0.path().display()
    );
    f.coffer.apply("test", &yaml).unwrap();
    let mut params = serde_json::Map::new();
    params.insert("mode".into(), "stream".into());
    params.insert("bytes".into(), (16u64 << 20).into());
    let req = ActionRequest {
        action: "backup".into(),
        workload: Some("victim".into()),
        params,
        ..Default::default()
    };
    let p = f.coffer.prepare(req).await.unwrap();
    let a = f.coffer.run(&p).await.unwrap();
    let e = error_of(&a);
    assert!(
        e.contains("No space left on device") && e.contains("stream.bin"),
        "{e}"
    );
    let left = files_under(disk.0.path());
    assert!(left.is_empty(), "left on the full disk: {left:?}");
    assert!(
        f.coffer
            .catalog
            .list::<serde_json::Value>(coffer::model::Kind::RestorePoint)
            .unwrap()
            .is_empty()
    );
}

/// What the hostile plugin's `write` mode writes at offset `i`.
fn pattern(i: u64) -> u8 {
    ((i * 31 + i / 4096) % 251) as u8
}

/// The stored objects under the location whose name starts with `name`.
fn stored(f: &Fixture, name: &str) -> Vec<std::path::PathBuf> {
    files_under(&f.home.path().join("locations"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(name))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_the_plugin_writes_itself_is_stored_whole_or_not_at_all() {
    let f = fixture(LIMITS).await;
    // More than the pipe and an 8 MiB part hold, not a multiple of either.
    let size = (9u64 << 20) + 12345;
    let a = common::run(&f, "backup", "write", serde_json::json!({"bytes": size})).await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    let objects = stored(&f, "written.bin");
    assert_eq!(objects.len(), 1, "{objects:?}");
    let out = std::process::Command::new("zstd")
        .args(["-d", "-c"])
        .arg(&objects[0])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len() as u64, size);
    let first_wrong = (0..size).find(|&i| out.stdout[i as usize] != pattern(i));
    assert_eq!(
        first_wrong, None,
        "the stored bytes differ from what was written"
    );
    assert!(
        a.status
            .audit
            .iter()
            .any(|x| x.capability == "location.create" && x.result == "ok")
    );

    // A stream dropped unfinished: its upload is cancelled, no object is stored or recorded.
    let f = fixture(LIMITS).await;
    let a = common::run(
        &f,
        "backup",
        "write-abandon",
        serde_json::json!({"bytes": 3u64 << 20}),
    )
    .await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert!(stored(&f, "written.bin").is_empty());
    let rp: serde_json::Value = f
        .coffer
        .catalog
        .list::<serde_json::Value>(coffer::model::Kind::RestorePoint)
        .unwrap()
        .pop()
        .unwrap();
    assert!(!rp.to_string().contains("written.bin"), "{rp}");
    still_healthy(&f).await;
}
