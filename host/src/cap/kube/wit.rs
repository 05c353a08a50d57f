//! `kube` host functions: names checked before any URL is built, the call confined to the
//! subject's namespace unless the grant lists another, the grant check (group, kind, verb,
//! namespace), the call, and an audit entry with the request path it resolved to.

use super::{Condition, Kube, ObjRef, names};
use crate::cap::{ActionScope, CapView, HostResult};
use crate::wit::WitError;
use crate::wit::abi::kube;
use serde_json::Value;
use std::time::{Duration, Instant};

fn json_arg(what: &str, s: &str) -> Result<Value, WitError> {
    serde_json::from_str(s)
        .map_err(|e| WitError::InvalidArgument(format!("{what} is not JSON: {e}")))
}

/// A checked object reference, its namespace resolved (the subject's when it names none).
fn checked(
    cap: &Kube,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<ObjRef, WitError> {
    names::api_version(api_version)?;
    names::kind(kind)?;
    let ns = match namespace {
        Some(ns) => ns.to_string(),
        None => cap.backend.home_namespace().unwrap_or_default().to_string(),
    };
    // Local mode has no namespace; the backend answers `unavailable` after the checks.
    if !ns.is_empty() {
        names::namespace(&ns)?;
    }
    if let Some(n) = name {
        names::name(n)?;
    }
    Ok(ObjRef {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: (!ns.is_empty()).then_some(ns),
        name: name.unwrap_or_default().to_string(),
    })
}

/// Check, run, audit: the shape of every kube call.
async fn kube_call<T, F>(
    cap: &Kube,
    scope: &ActionScope,
    call_name: &str,
    verb: &str,
    obj: Result<ObjRef, WitError>,
    call: impl FnOnce(ObjRef) -> F,
) -> HostResult<T>
where
    F: Future<Output = Result<T, WitError>>,
{
    let started = Instant::now();
    let (target, res) = match obj {
        Err(e) => (String::new(), Err(e)),
        Ok(o) => {
            let ns = o.namespace.clone().unwrap_or_default();
            let target = cap.backend.url(&o);
            let home = cap.backend.home_namespace();
            match cap.grant.check(&o.api_version, &o.kind, verb, &ns, home) {
                Err(e) => (target, Err(e)),
                Ok(()) => (target, call(o).await),
            }
        }
    };
    scope.audit(call_name, &target, verb, started, &res, 0);
    Ok(res)
}

fn of(cap: &Kube, o: &kube::ObjectRef) -> Result<ObjRef, WitError> {
    checked(
        cap,
        &o.api_version,
        &o.kind,
        o.namespace.as_deref(),
        Some(&o.name),
    )
}

impl kube::Host for CapView<'_, Kube> {
    async fn get(&mut self, obj: kube::ObjectRef) -> HostResult<String> {
        let k = self.cap.backend.clone();
        let o = of(self.cap, &obj);
        let r = kube_call(self.cap, self.scope, "kube.get", "get", o, |o| async move {
            k.get(&o).await
        })
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn list_objects(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> HostResult<Vec<String>> {
        let k = self.cap.backend.clone();
        let o = checked(self.cap, &api_version, &kind, namespace.as_deref(), None);
        let r = kube_call(
            self.cap,
            self.scope,
            "kube.list",
            "list",
            o,
            |o| async move {
                k.list(
                    &o.api_version,
                    &o.kind,
                    o.namespace.as_deref(),
                    label_selector.as_deref(),
                )
                .await
            },
        )
        .await?;
        Ok(r.map(|v| v.into_iter().map(|o| o.to_string()).collect()))
    }

    async fn apply(&mut self, manifest: String, field_manager: String) -> HostResult<String> {
        let mut m = match json_arg("apply: the manifest", &manifest) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let field = |p: &str| m.pointer(p).and_then(Value::as_str).map(String::from);
        let o = match (
            field("/apiVersion"),
            field("/kind"),
            field("/metadata/name"),
        ) {
            (Some(av), Some(kind), Some(name)) => checked(
                self.cap,
                &av,
                &kind,
                field("/metadata/namespace").as_deref(),
                Some(&name),
            ),
            _ => Err(WitError::InvalidArgument(
                "apply: the manifest needs apiVersion, kind and metadata.name".into(),
            )),
        };
        // The namespace checked is the one applied to.
        if let Ok(o) = &o
            && let (Some(ns), Some(meta)) = (&o.namespace, m.pointer_mut("/metadata"))
            && let Some(meta) = meta.as_object_mut()
        {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let k = self.cap.backend.clone();
        let r = kube_call(
            self.cap,
            self.scope,
            "kube.apply",
            "apply",
            o,
            |_| async move { k.apply(&m, &field_manager).await },
        )
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn patch(&mut self, obj: kube::ObjectRef, merge_patch: String) -> HostResult<String> {
        let p = match json_arg("patch", &merge_patch) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let k = self.cap.backend.clone();
        let o = of(self.cap, &obj);
        let r = kube_call(
            self.cap,
            self.scope,
            "kube.patch",
            "patch",
            o,
            |o| async move { k.patch(&o, &p).await },
        )
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn delete(&mut self, obj: kube::ObjectRef) -> HostResult<()> {
        let k = self.cap.backend.clone();
        let o = of(self.cap, &obj);
        kube_call(
            self.cap,
            self.scope,
            "kube.delete",
            "delete",
            o,
            |o| async move { k.delete(&o).await },
        )
        .await
    }

    async fn wait_for(
        &mut self,
        obj: kube::ObjectRef,
        condition: String,
        timeout_ms: u64,
    ) -> HostResult<String> {
        let c = match Condition::parse(&condition) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        // Never past the action's own deadline.
        let timeout = Duration::from_millis(timeout_ms).min(self.scope.limits.timeout);
        let k = self.cap.backend.clone();
        let o = of(self.cap, &obj);
        let r = kube_call(
            self.cap,
            self.scope,
            "kube.wait-for",
            "get",
            o,
            |o| async move { k.wait_for(&o, &c, timeout).await },
        )
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn scale(&mut self, obj: kube::ObjectRef, replicas: u32) -> HostResult<u32> {
        let k = self.cap.backend.clone();
        let o = of(self.cap, &obj);
        kube_call(
            self.cap,
            self.scope,
            "kube.scale",
            "patch",
            o,
            |o| async move { k.scale(&o, replicas).await },
        )
        .await
    }
}
