//! Reading: list and watch, with label and field selectors.

use super::{Key, Request, Shared, State, Target, parse_path};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub(super) fn list(st: &State, t: &Target, q: &BTreeMap<String, String>) -> (u16, Value) {
    let labels = q.get("labelSelector").map(String::as_str).unwrap_or("");
    let fields = q.get("fieldSelector").map(String::as_str).unwrap_or("");
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|((g, p, ns, _), _)| {
            g == &t.group && p == &t.plural && (t.namespace.is_empty() || ns == &t.namespace)
        })
        .map(|(_, o)| o)
        .filter(|o| selects(labels, o.pointer("/metadata/labels")))
        .filter(|o| fields_match(fields, o))
        .cloned()
        .collect();
    let kind = items
        .first()
        .and_then(|o| o.get("kind"))
        .and_then(Value::as_str)
        .map(|k| format!("{k}List"))
        .unwrap_or_else(|| "List".into());
    let api_version = if t.group.is_empty() {
        t.version.clone()
    } else {
        format!("{}/{}", t.group, t.version)
    };
    (
        200,
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"resourceVersion": st.resource_version.to_string()}, "items": items}),
    )
}

/// Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined.
pub fn selects(selector: &str, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k.trim()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k.trim()).is_none()
            } else {
                get(term).is_some()
            }
        })
}

fn fields_match(selector: &str, o: &Value) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let Some((k, v)) = term.split_once('=') else {
            return false;
        };
        let path = format!("/{}", k.trim_end_matches('=').replace('.', "/"));
        o.pointer(&path).and_then(Value::as_str) == Some(v.trim_start_matches('='))
    })
}

/// A watch: events after `resourceVersion` (every current object as ADDED when it is absent
/// or "0"), then new ones as they happen, until `timeoutSeconds` (default 300). Chunked JSON
/// lines, as the API server sends them.
pub(super) fn watch(req: &Request, shared: &Shared, w: &mut TcpStream) -> std::io::Result<()> {
    let Some(t) = parse_path(&req.path) else {
        return Err(std::io::Error::other("bad watch path"));
    };
    let labels = req.query.get("labelSelector").cloned().unwrap_or_default();
    let fields = req.query.get("fieldSelector").cloned().unwrap_or_default();
    let from: u64 = req
        .query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let ours = |k: &Key| {
        k.0 == t.group && k.1 == t.plural && (t.namespace.is_empty() || k.2 == t.namespace)
    };
    let selected =
        |o: &Value| selects(&labels, o.pointer("/metadata/labels")) && fields_match(&fields, o);
    let mut st = shared.state.lock().unwrap();
    let mut sent = from;
    if from == 0 {
        let initial: Vec<Value> = st
            .objects
            .iter()
            .filter(|(k, o)| ours(k) && selected(o))
            .map(|(_, o)| json!({"type": "ADDED", "object": o}))
            .collect();
        sent = st.resource_version;
        drop(st);
        for e in &initial {
            send(w, e)?;
        }
        st = shared.state.lock().unwrap();
    }
    loop {
        let batch: Vec<Value> = st
            .events
            .iter()
            .filter(|e| e.rv > sent && ours(&e.key) && selected(&e.object))
            .map(|e| json!({"type": e.kind, "object": e.object}))
            .collect();
        sent = st.resource_version;
        drop(st);
        for e in &batch {
            send(w, e)?;
        }
        let now = Instant::now();
        if now >= deadline {
            return w.write_all(b"0\r\n\r\n");
        }
        st = shared.state.lock().unwrap();
        if st.resource_version == sent {
            let wait = (deadline - now).min(Duration::from_millis(500));
            st = shared.changed.wait_timeout(st, wait).unwrap().0;
        }
    }
}

fn send(w: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    w.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())?;
    w.flush()
}
