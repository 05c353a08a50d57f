//! A Kubernetes API simulator: no real kube-apiserver can be installed on these machines,
//! so this in-process HTTP server stands in for one, following the API's semantics for what
//! coffer uses. kube-rs talks to it through a kubeconfig like to any cluster.
//!
//! Supported: typed (core and grouped) and custom resources, namespaced and cluster-scoped;
//! get, list (label selectors `k=v`, `k!=v`, `k`, `!k`; field selectors on metadata.name and
//! metadata.namespace), create (AlreadyExists), replace (resourceVersion conflicts), merge
//! and strategic-merge patches (as JSON merge patches), JSON patches (RFC 6902), server-side apply (create or merge;
//! field managers are not tracked), delete, and the status subresource (the main resource
//! never changes status; /status changes only status), finalizers (a DELETE of an object
//! with finalizers only sets deletionTimestamp; it goes when they are removed), and watch
//! (chunked JSON events from a resourceVersion, with the same selectors, until
//! timeoutSeconds). Also: pods/exec over the websocket protocol (v4/v5.channel.k8s.io),
//! running the command as a local process with the container's env (exec.rs), and
//! simulated controllers (controllers.rs): StatefulSets and Deployments get Running pods.

mod controllers;
mod exec;
mod groups;
mod query;

pub use query::selects;
use query::{list, watch};

pub use controllers::{
    CUT_AFTER_MS, CUT_ON_CONTENT, FAIL_AFTER_CUT, PATH_ANNOTATION, READY_AFTER_MS,
};

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// (group, plural, namespace, name); namespace is empty for cluster-scoped resources.
type Key = (String, String, String, String);

#[derive(Default)]
struct State {
    /// Where simulated volumes and snapshots keep their files.
    root: PathBuf,
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    uid: u64,
    /// Every change, in order: what watches replay and wait on.
    events: Vec<Event>,
}

struct Event {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

/// The state, and a condition watchers wait on for new events.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Every request, in order (for tests of who asked what).
    requests: Mutex<Vec<Seen>>,
}

/// A request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The `Impersonate-User` the client asked for, if any.
    pub impersonate: Option<String>,
    /// Who asked: the bearer token of its kubeconfig (see [`KubeSim::kubeconfig_as`]).
    pub user: Option<String>,
    /// The JSON body, if it had one.
    pub body: Option<Value>,
}

/// Record a change for watchers.
fn record(st: &mut State, kind: &'static str, key: &Key, object: &Value) {
    let rv = st.resource_version;
    st.events.push(Event {
        rv,
        kind,
        key: key.clone(),
        object: object.clone(),
    });
}

pub struct KubeSim {
    pub port: u16,
    pub kubeconfig: PathBuf,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

impl KubeSim {
    pub fn start() -> KubeSim {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the simulator");
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let shared: Arc<Shared> = Arc::default();
        shared.state.lock().unwrap().root = dir.path().to_path_buf();
        // The controllers' own pace (snapshots become ready a tick after creation).
        let weak = Arc::downgrade(&shared);
        std::thread::spawn(move || {
            while let Some(s) = weak.upgrade() {
                controllers::react(&mut s.state.lock().unwrap());
                s.changed.notify_all();
                drop(s);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, s));
            }
        });
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: sim\n  user: {{}}\ncontexts:\n- name: sim\n  context: {{cluster: sim, user: sim, namespace: default}}\ncurrent-context: sim\n"
            ),
        )
        .unwrap();
        KubeSim {
            port,
            kubeconfig,
            shared,
            _dir: dir,
        }
    }

    /// A kubeconfig whose requests carry bearer token `user` (recorded with each request).
    pub fn kubeconfig_as(&self, user: &str) -> PathBuf {
        let path = self.kubeconfig.with_file_name(format!("kubeconfig-{user}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {{server: \"http://127.0.0.1:{}\"}}\nusers:\n- name: {user}\n  user: {{token: {user}}}\ncontexts:\n- name: sim\n  context: {{cluster: sim, user: {user}, namespace: default}}\ncurrent-context: sim\n",
                self.port
            ),
        )
        .unwrap();
        path
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// An object as stored (for assertions), by group ("" for core), plural, namespace, name.
    pub fn object(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let st = self.shared.state.lock().unwrap();
        st.objects
            .get(&(group.into(), plural.into(), ns.into(), name.into()))
            .cloned()
    }
}

/// One request: method, path, query, content type, body.
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    /// Every query parameter in order (exec repeats `command`).
    params: Vec<(String, String)>,
    /// Header names lowercased.
    headers: BTreeMap<String, String>,
    content_type: String,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let params: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Request {
        method,
        path: path.to_string(),
        query: params.iter().cloned().collect(),
        params,
        headers,
        content_type,
        body,
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(conn: TcpStream, shared: Arc<Shared>) {
    let _ = conn.set_nodelay(true);
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        shared.requests.lock().unwrap().push(Seen {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            impersonate: req.headers.get("impersonate-user").cloned(),
            user: req
                .headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(String::from),
            body: serde_json::from_slice(&req.body).ok(),
        });
        if req.path.ends_with("/exec") {
            // The connection becomes the exec's websocket.
            exec::serve(&req, &shared, writer);
            return;
        }
        if req.method == "GET"
            && matches!(
                req.query.get("watch").map(String::as_str),
                Some("1" | "true")
            )
        {
            if watch(&req, &shared, &mut writer).is_err() {
                return;
            }
            continue;
        }
        let (code, body) = handle(&req, &shared.state);
        shared.changed.notify_all();
        let text = body.to_string();
        let reason = match code {
            200 => "OK",
            201 => "Created",
            404 => "Not Found",
            409 => "Conflict",
            _ => "Error",
        };
        // One write: a head and a body in two small writes meet Nagle and delayed ACKs
        // (40 ms per request).
        let reply = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// Where a path points.
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: String,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match seg.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(*s)),
        _ => return None,
    };
    Some(Target {
        group,
        version,
        plural: plural.to_string(),
        namespace,
        name,
        status: sub == Some("status"),
    })
}

fn handle(req: &Request, state: &Mutex<State>) -> (u16, Value) {
    let Some(t) = parse_path(&req.path) else {
        return status(
            404,
            "NotFound",
            format!("the server could not find {}", req.path),
        );
    };
    let mut st = state.lock().unwrap();
    let (code, body) = apply_request(req, &t, &mut st);
    if req.method != "GET" && code < 300 {
        // What the cluster's controllers would do in reaction.
        controllers::react(&mut st);
    }
    (code, body)
}

fn apply_request(req: &Request, t: &Target, st: &mut State) -> (u16, Value) {
    let key = |name: &str| {
        (
            t.group.clone(),
            t.plural.clone(),
            t.namespace.clone(),
            name.to_string(),
        )
    };
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", format!("body is not JSON: {e}")),
        }
    };
    match (req.method.as_str(), &t.name) {
        ("GET", None) => list(st, t, &req.query),
        ("GET", Some(n)) => match st.objects.get(&key(n)) {
            Some(o) => (200, o.clone()),
            None => not_found(t, n),
        },
        ("POST", None) => {
            let mut obj = body;
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(String::from)
                .or_else(|| {
                    obj.pointer("/metadata/generateName")
                        .and_then(Value::as_str)
                        .map(|g| format!("{g}{:05x}", st.uid + 1))
                });
            let Some(name) = name else {
                return status(422, "Invalid", "metadata.name: Required value".into());
            };
            if st.objects.contains_key(&key(&name)) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", t.plural),
                );
            }
            stamp_new(st, &mut obj, t, &name);
            st.objects.insert(key(&name), obj.clone());
            record(st, "ADDED", &key(&name), &obj);
            (201, obj)
        }
        ("PUT", Some(n)) => {
            let Some(old) = st.objects.get(&key(n)).cloned() else {
                return not_found(t, n);
            };
            let current_rv = old.pointer("/metadata/resourceVersion").cloned();
            if let Some(rv) = body.pointer("/metadata/resourceVersion")
                && Some(rv) != current_rv.as_ref()
            {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{n}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.plural
                    ),
                );
            }
            let mut new = if t.status {
                let mut o = old.clone();
                o["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                o
            } else {
                let mut o = body;
                match old.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                o
            };
            keep_meta(st, &old, &mut new);
            st.objects.insert(key(n), new.clone());
            record(st, "MODIFIED", &key(n), &new);
            (200, new)
        }
        ("PATCH", Some(n)) => {
            let apply = req.content_type.starts_with("application/apply-patch");
            let old = match st.objects.get(&key(n)).cloned() {
                Some(o) => o,
                None if apply && !t.status => {
                    let mut obj = body;
                    stamp_new(st, &mut obj, t, n);
                    st.objects.insert(key(n), obj.clone());
                    record(st, "ADDED", &key(n), &obj);
                    return (201, obj);
                }
                None => return not_found(t, n),
            };
            // A patch that names a resourceVersion is a precondition, as on a real server.
            if let Some(rv) = body.pointer("/metadata/resourceVersion")
                && Some(rv) != old.pointer("/metadata/resourceVersion")
            {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{n}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.plural
                    ),
                );
            }
            let mut new = old.clone();
            if req.content_type.starts_with("application/json-patch+json") {
                // RFC 6902, as kube-runtime's finalizer() sends: a failed `test` is a 422.
                let ops: json_patch::Patch = match serde_json::from_value(body) {
                    Ok(p) => p,
                    Err(e) => return status(400, "BadRequest", format!("json patch: {e}")),
                };
                // The API server (evanphx/json-patch) treats a missing path as null in
                // `test`; the crate does not, so drop a null test of an absent path.
                let ops = json_patch::Patch(
                    ops.0
                        .into_iter()
                        .filter(|op| match op {
                            json_patch::PatchOperation::Test(t) => {
                                !(t.value.is_null() && new.pointer(t.path.as_str()).is_none())
                            }
                            _ => true,
                        })
                        .collect(),
                );
                if let Err(e) = json_patch::patch(&mut new, &ops) {
                    return status(422, "Invalid", format!("json patch: {e}"));
                }
                if t.status {
                    let status_only = new.get("status").cloned();
                    new = old.clone();
                    if let Some(s) = status_only {
                        new["status"] = s;
                    }
                } else if let Some(s) = old.get("status") {
                    new["status"] = s.clone();
                }
            } else if t.status {
                let mut s = old.get("status").cloned().unwrap_or(json!({}));
                merge_patch(&mut s, body.get("status").unwrap_or(&Value::Null));
                new["status"] = s;
            } else {
                let mut patch = body;
                if let Some(m) = patch.as_object_mut() {
                    m.remove("status");
                }
                merge_patch(&mut new, &patch);
                if let Some(s) = old.get("status") {
                    new["status"] = s.clone();
                }
            }
            keep_meta(st, &old, &mut new);
            st.objects.insert(key(n), new.clone());
            record(st, "MODIFIED", &key(n), &new);
            (200, new)
        }
        ("DELETE", Some(n)) => {
            let Some(old) = st.objects.get(&key(n)).cloned() else {
                return not_found(t, n);
            };
            let finalizers = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if finalizers {
                // Marked for deletion; it goes when its finalizers are removed.
                if old.pointer("/metadata/deletionTimestamp").is_some() {
                    return (200, old);
                }
                let mut new = old.clone();
                new["metadata"]["deletionTimestamp"] = json!(time_now());
                keep_meta(st, &old, &mut new);
                st.objects.insert(key(n), new.clone());
                record(st, "MODIFIED", &key(n), &new);
                return (200, new);
            }
            st.objects.remove(&key(n));
            st.resource_version += 1;
            record(st, "DELETED", &key(n), &old);
            (200, old)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{} {}", req.method, req.path),
        ),
    }
}

fn not_found(t: &Target, name: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", t.plural),
    )
}

/// Server-set metadata of a new object.
fn stamp_new(st: &mut State, obj: &mut Value, t: &Target, name: &str) {
    st.resource_version += 1;
    st.uid += 1;
    let meta = obj
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let m = meta.as_object_mut().unwrap();
    m.insert("name".into(), json!(name));
    if !t.namespace.is_empty() {
        m.insert("namespace".into(), json!(t.namespace));
    }
    m.insert(
        "uid".into(),
        json!(format!("00000000-0000-0000-0000-{:012x}", st.uid)),
    );
    m.insert(
        "resourceVersion".into(),
        json!(st.resource_version.to_string()),
    );
    m.insert("generation".into(), json!(1));
    m.insert("creationTimestamp".into(), json!(time_now()));
    m.remove("generateName");
}

/// After an update: the server's metadata stays, resourceVersion moves on, generation counts
/// spec changes.
fn keep_meta(st: &mut State, old: &Value, new: &mut Value) {
    st.resource_version += 1;
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let spec_changed = old.get("spec") != new.get("spec");
    let meta = new
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap();
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
    ] {
        if let Some(v) = old_meta.get(k) {
            meta.insert(k.into(), v.clone());
        }
    }
    let generation = old_meta
        .get("generation")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        + u64::from(spec_changed);
    meta.insert("generation".into(), json!(generation));
    meta.insert(
        "resourceVersion".into(),
        json!(st.resource_version.to_string()),
    );
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn time_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}
