//! A scripted API server for unit tests of what the daemon does with its answers: a
//! `kube::Client` whose requests go to a closure instead of the network. The closure sees
//! each request (method, path, JSON body) and answers with a status and a JSON body;
//! every request is kept for the test to inspect. End-to-end behaviour is tested on the
//! simulator (`tests/src/kube_sim`).

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// What the client was asked, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

pub type Answer = Box<dyn Fn(&Seen) -> (u16, Value) + Send + Sync>;

/// A client talking to `answer`, and the log of what it was asked.
pub fn client(answer: Answer) -> (kube::Client, Log) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let seen_log = log.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let log = seen_log.clone();
        let answer = answer.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, reply) = answer(&seen);
            log.lock().unwrap().push(seen);
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&reply).unwrap(),
                    ))
                    .unwrap(),
            )
        }
    });
    (kube::Client::new(service, "db"), log)
}

/// The API server's answer to a refused request.
pub fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

/// An ActionSet resource as the API server returns it.
pub fn action_set(name: &str, version: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
           "metadata": {"name": name, "namespace": "db", "resourceVersion": version},
           "spec": spec, "status": status})
}
