//! The `kube` interface: Kubernetes objects. A backend ([`KubeBackend`]) talks to a cluster
//! (kube-rs, [`client::ClusterKube`]); local mode has none ([`NoCluster`]). The WIT glue
//! ([`wit`]) checks grants (kind and verb) and records every call.

pub mod client;
mod grant;
pub mod names;
mod wit;

pub use grant::KubeGrant;

use crate::wit::WitError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// One call's kube: its grant and the cluster's backend ([`NoCluster`] in local mode).
pub struct Kube {
    grant: KubeGrant,
    backend: Arc<dyn KubeBackend>,
}

impl crate::cap::Capability for Kube {
    fn build(grants: &crate::cap::Grants, backends: &crate::cap::Backends) -> Kube {
        Kube {
            grant: KubeGrant::new(grants),
            backend: backends
                .get::<Arc<dyn KubeBackend>>()
                .unwrap_or_else(|| Arc::new(NoCluster)),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut wasmtime::component::Linker<T>,
        get: fn(&mut T) -> crate::cap::CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        crate::wit::abi::kube::add_to_linker::<T, crate::cap::HasCap<Kube>>(linker, get)
    }
}

/// An object by apiVersion, kind, namespace and name.
#[derive(Debug, Clone)]
pub struct ObjRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[async_trait::async_trait]
pub trait KubeBackend: Send + Sync {
    /// The subject's namespace: where calls go unless they name another (which the grant
    /// must list).
    fn home_namespace(&self) -> Option<&str> {
        None
    }
    /// The request path a call on `o` resolves to, for the audit trail.
    fn url(&self, o: &ObjRef) -> String {
        format!(
            "{}/{} {}/{}",
            o.api_version,
            o.kind,
            o.namespace.as_deref().unwrap_or(""),
            o.name
        )
    }
    async fn get(&self, obj: &ObjRef) -> Result<Value, WitError>;
    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, WitError>;
    /// Server-side apply of a whole manifest.
    async fn apply(&self, manifest: &Value, field_manager: &str) -> Result<Value, WitError>;
    /// JSON merge patch of the main resource.
    async fn patch(&self, obj: &ObjRef, merge_patch: &Value) -> Result<Value, WitError>;
    async fn delete(&self, obj: &ObjRef) -> Result<(), WitError>;
    /// Wait until `condition` holds (see [`Condition`]); the object as it then is.
    async fn wait_for(
        &self,
        obj: &ObjRef,
        condition: &Condition,
        timeout: Duration,
    ) -> Result<Value, WitError>;
    /// Set spec.replicas; the previous count.
    async fn scale(&self, obj: &ObjRef, replicas: u32) -> Result<u32, WitError>;
}

/// What `wait-for` waits for, in `kubectl wait --for` terms: `condition=Ready` (a status
/// condition whose status is "True"), `jsonpath={.status.phase}=Running` (a field equal to a
/// value), or `delete` (the object is gone).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Status(String),
    Field { pointer: String, value: String },
    Deleted,
}

impl Condition {
    pub fn parse(s: &str) -> Result<Condition, WitError> {
        let bad = || {
            WitError::InvalidArgument(format!(
                "condition {s:?}: use condition=TYPE, jsonpath={{.a.b}}=VALUE or delete"
            ))
        };
        if s == "delete" {
            return Ok(Condition::Deleted);
        }
        if let Some(t) = s.strip_prefix("condition=") {
            return if t.is_empty() {
                Err(bad())
            } else {
                Ok(Condition::Status(t.to_string()))
            };
        }
        let rest = s.strip_prefix("jsonpath=").ok_or_else(bad)?;
        let (path, value) = rest.split_once("}=").ok_or_else(bad)?;
        let path = path.strip_prefix("{.").ok_or_else(bad)?;
        if path.is_empty() {
            return Err(bad());
        }
        Ok(Condition::Field {
            pointer: format!("/{}", path.replace('.', "/")),
            value: value.to_string(),
        })
    }

    /// Whether `obj` (None: it does not exist) satisfies the condition.
    pub fn holds(&self, obj: Option<&Value>) -> bool {
        match (self, obj) {
            (Condition::Deleted, o) => o.is_none(),
            (_, None) => false,
            (Condition::Status(t), Some(o)) => o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some(t)
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                }),
            (Condition::Field { pointer, value }, Some(o)) => match o.pointer(pointer) {
                Some(Value::String(s)) => s == value,
                Some(v) => *v.to_string() == **value,
                None => false,
            },
        }
    }
}

/// Local mode: no cluster.
pub struct NoCluster;

fn no_cluster<T>() -> Result<T, WitError> {
    Err(WitError::Unavailable(
        "kube calls are not available in local mode; they need the kubernetes backend".into(),
    ))
}

#[async_trait::async_trait]
impl KubeBackend for NoCluster {
    async fn get(&self, _: &ObjRef) -> Result<Value, WitError> {
        no_cluster()
    }
    async fn list(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<Value>, WitError> {
        no_cluster()
    }
    async fn apply(&self, _: &Value, _: &str) -> Result<Value, WitError> {
        no_cluster()
    }
    async fn patch(&self, _: &ObjRef, _: &Value) -> Result<Value, WitError> {
        no_cluster()
    }
    async fn delete(&self, _: &ObjRef) -> Result<(), WitError> {
        no_cluster()
    }
    async fn wait_for(&self, _: &ObjRef, _: &Condition, _: Duration) -> Result<Value, WitError> {
        no_cluster()
    }
    async fn scale(&self, _: &ObjRef, _: u32) -> Result<u32, WitError> {
        no_cluster()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_and_hold() {
        let ready = Condition::parse("condition=Ready").unwrap();
        let o = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "readyReplicas": 3, "phase": "Running"}});
        assert!(ready.holds(Some(&o)));
        assert!(!ready.holds(Some(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        )));
        assert!(
            Condition::parse("jsonpath={.status.readyReplicas}=3")
                .unwrap()
                .holds(Some(&o))
        );
        assert!(
            Condition::parse("jsonpath={.status.phase}=Running")
                .unwrap()
                .holds(Some(&o))
        );
        assert!(
            !Condition::parse("jsonpath={.status.phase}=Failed")
                .unwrap()
                .holds(Some(&o))
        );
        assert!(Condition::parse("delete").unwrap().holds(None));
        assert!(!ready.holds(None));
        for bad in [
            "",
            "Ready",
            "condition=",
            "jsonpath=.status",
            "jsonpath={.}=1",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad:?}");
        }
    }
}
