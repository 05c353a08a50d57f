//! etcd snapshots against etcd 3.4.

use super::*;

fn etcd_all(e: &Etcd) -> String {
    e.etcdctl(&["get", "", "--prefix"])
}

#[test]
fn etcd_snapshot_restore_to_new_data_dir_and_failures() {
    let mut e = Etcd::start();
    for batch in 0..10 {
        let mut txn = String::from("\n");
        for i in 0..100 {
            let k = batch * 100 + i;
            txn.push_str(&format!(
                "put /app/key-{k:04} \"value {k} ✓ {}\"\n",
                "x".repeat(k % 37)
            ));
        }
        // An empty line ends the success requests, another the (empty) failure ones.
        txn.push_str("\n\n");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ETCDCTL_API=3 etcdctl --endpoints={} txn",
                e.endpoint()
            ))
            .stdin_file(&txn);
        assert!(out.contains("SUCCESS"), "{out}");
    }
    e.etcdctl(&["put", "/config/empty", ""]);
    let before = etcd_all(&e);
    assert_eq!(
        before.lines().filter(|l| l.starts_with("/app/")).count(),
        1000
    );

    let c = cli();
    let params = format!("{{backup: {{endpoint: \"{}\"}}}}", e.endpoint());
    assert!(c.apply(&workload("kv", "etcd", &[], None, &params)).ok);
    let b = c.run(&["backup", "kv", "-o", "json"]);
    let rp = restore_point_of(&b);
    let out = &b.json()["status"]["outputs"];
    assert!(
        out["keys"].as_str().unwrap().parse::<u64>().unwrap() >= 1001,
        "{out}"
    );

    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("restored");
    c.ok(&[
        "restore",
        "kv",
        "--from",
        &rp,
        "-p",
        &format!("dataDir={}", data.display()),
    ]);
    let restored = Etcd::start_on(target, data.clone());
    assert_eq!(etcd_all(&restored), before);
    drop(restored);

    // Restoring over an existing directory is refused.
    let busy = tempfile::tempdir().unwrap();
    fails_with(
        &c,
        &[
            "restore",
            "kv",
            "--from",
            &rp,
            "-p",
            &format!("dataDir={}", busy.path().display()),
        ],
        "exists; etcd restores into a new directory",
    );
    // Bad params.
    fails_with(
        &c,
        &["backup", "kv", "-p", "endpoint=a:1,b:2"],
        "params.endpoint",
    );
    fails_with(
        &c,
        &["restore", "kv", "--from", &rp, "-p", "dataDir=relative/dir"],
        "must be an absolute path",
    );
    // A tool missing from PATH.
    assert!(
        c.apply(&workload(
            "kv-nopath",
            "etcd",
            &[("PATH", "/nonexistent")],
            None,
            &params
        ))
        .ok
    );
    fails_with(&c, &["backup", "kv-nopath"], "was not found on the PATH");
    // Bad credentials: auth on, a wrong password.
    e.etcdctl(&["user", "add", "root:right-pw"]);
    e.etcdctl(&["auth", "enable"]);
    let work = tempfile::tempdir().unwrap();
    let wrong = password_file(work.path(), "wrong-pw");
    // With a password, the Workload pins the endpoint it may go to.
    let auth_params = "{backup: {user: root}}";
    let pinned = [("ETCDCTL_ENDPOINTS", e.endpoint())];
    let pinned: Vec<(&str, &str)> = pinned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(
        c.apply(&workload(
            "kv-auth",
            "etcd",
            &pinned,
            Some(&wrong),
            auth_params
        ))
        .ok
    );
    fails_with(&c, &["backup", "kv-auth"], "authentication failed");
    let right = password_file(work.path(), "right-pw");
    assert!(
        c.apply(&workload(
            "kv-auth",
            "etcd",
            &pinned,
            Some(&right),
            auth_params
        ))
        .ok
    );
    // An endpoint the plugin is told to use that is not the pinned one is refused.
    fails_with(
        &c,
        &["backup", "kv-auth", "-p", "endpoint=127.0.0.1:1"],
        "pins ETCDCTL_ENDPOINTS",
    );
    restore_point_of(&c.run(&["backup", "kv-auth", "-o", "json"]));
    // The server down.
    e.stop();
    fails_with(&c, &["backup", "kv"], "is not healthy");
}

/// `sh -c` with a string on stdin; stdout.
trait StdinFile {
    fn stdin_file(&mut self, input: &str) -> String;
}

impl StdinFile for std::process::Command {
    fn stdin_file(&mut self, input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    }
}
