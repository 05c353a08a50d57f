//! What a plugin can reach over the network: only the peers its Blueprint grants. A
//! granted listener gets the plugin's bytes and answers; a port next to it, a name nobody
//! granted, listening, UDP and wasi's own name lookup are refused — and the refused
//! listener never sees a connection. A Blueprint granting no `net` gives no TCP at all.

use super::common;
use coffer::model::Phase;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A listener that answers each connection's first line, counting connections.
fn echo() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_ok() {
                let _ = (&s).write_all(format!("got {}", line.trim()).as_bytes());
            }
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_reaches_only_the_peers_its_blueprint_grants() {
    let (granted, granted_seen) = echo();
    let (other, other_seen) = echo();
    let (named, named_seen) = echo();
    let f = common::fixture(
        &format!("net: [\"127.0.0.1:{granted}\", \"localhost:{named}\"]"),
        "{}",
    )
    .await;
    let peers = json!([
        format!("127.0.0.1:{granted}"),
        format!("127.0.0.1:{other}"),
        format!("localhost:{named}"),
        format!("localhost:{other}"),
        "example.com:80",
    ]);
    let a = common::run(&f, "backup", "net", json!({"peers": peers})).await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    let out = |k: &str| a.status.outputs.get(k).cloned().unwrap_or_default();
    assert_eq!(out("n0"), "ok got hello from wasm", "the granted address");
    assert!(
        out("n1").contains("denied"),
        "a port not granted: {}",
        out("n1")
    );
    assert_eq!(out("n2"), "ok got hello from wasm", "a granted name");
    assert!(
        out("n3").contains("denied"),
        "the granted name on another port: {}",
        out("n3")
    );
    assert!(
        out("n4").contains("denied") && out("n4").contains("resolve example.com"),
        "a name not granted is not even looked up: {}",
        out("n4")
    );
    assert!(out("listen").starts_with("error"), "{}", out("listen"));
    assert!(out("udp").starts_with("error"), "{}", out("udp"));
    assert!(out("lookup").starts_with("error"), "{}", out("lookup"));
    assert_eq!(granted_seen.load(Ordering::SeqCst), 1);
    assert_eq!(named_seen.load(Ordering::SeqCst), 1);
    assert_eq!(
        other_seen.load(Ordering::SeqCst),
        0,
        "a refused connect never leaves coffer"
    );
    // Every connect and lookup, allowed or not, is on the audit trail.
    let audit: Vec<String> = a
        .status
        .audit
        .iter()
        .filter(|e| e.capability == "net")
        .map(|e| format!("{} {}", e.target, e.result))
        .collect();
    for want in [
        format!("connect 127.0.0.1:{granted} ok"),
        format!("connect 127.0.0.1:{other} denied"),
        "resolve localhost ok".to_string(),
        "resolve example.com denied".to_string(),
    ] {
        assert!(
            audit.iter().any(|l| l.starts_with(&want)),
            "no {want:?} in {audit:#?}"
        );
    }

    // Each connection, when it closed: its peer and the bytes each way.
    let closed: Vec<_> = a
        .status
        .audit
        .iter()
        .filter(|e| e.capability == "net" && e.target == format!("tcp 127.0.0.1:{granted}"))
        .collect();
    assert_eq!(closed.len(), 1, "{:#?}", a.status.audit);
    let received = closed[0]
        .args
        .strip_prefix("sent 16 B, received ")
        .and_then(|r| r.strip_suffix(" B"))
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{:?}", closed[0].args));
    assert!((1..=19).contains(&received), "{}", closed[0].args);
    assert_eq!(closed[0].bytes, 16 + received);
    assert!(
        !a.status
            .audit
            .iter()
            .any(|e| e.target == format!("tcp 127.0.0.1:{other}")),
        "a refused connect has no connection"
    );

    // No net grant: no TCP at all, even to the same listener.
    let bare = common::fixture("", "{}").await;
    let a = common::run(
        &bare,
        "backup",
        "net",
        json!({"peers": [format!("127.0.0.1:{granted}")]}),
    )
    .await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert!(
        a.status.outputs["n0"].starts_with("error"),
        "{}",
        a.status.outputs["n0"]
    );
    assert_eq!(granted_seen.load(Ordering::SeqCst), 1);

    // A Blueprint may not grant every host.
    let e = bare
        .coffer
        .apply(
            "test",
            &format!(
                "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: wide}}\nspec:\n  plugin: {{path: {}}}\n  grants: {{net: [\"*:9092\"]}}\n",
                coffer_tests::test_plugin("hostile").display()
            ),
        )
        .unwrap_err();
    assert!(format!("{e:#}").contains("any host"), "{e:#}");
}
