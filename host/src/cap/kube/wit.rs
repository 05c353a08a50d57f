//! `kube` host functions: grant check (kind and verb), the call, the audit entry.

use super::{Condition, ObjRef};
use crate::cap::{ActionContext, HostResult};
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::coffer::blueprint::kube;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn obj_ref(o: &kube::ObjectRef) -> ObjRef {
    ObjRef {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        namespace: o.namespace.clone(),
        name: o.name.clone(),
    }
}

fn json_arg(what: &str, s: &str) -> Result<Value, WitError> {
    serde_json::from_str(s)
        .map_err(|e| WitError::InvalidArgument(format!("{what} is not JSON: {e}")))
}

/// Check, run, audit: the shape of every kube call. (A free function over the context, so
/// the future holds no borrow of the non-Sync store state.)
async fn kube_call<T>(
    ctx: Arc<ActionContext>,
    cap: &str,
    api_version: &str,
    kind: &str,
    verb: &str,
    target: &str,
    call: impl Future<Output = Result<T, WitError>>,
) -> HostResult<T> {
    let started = Instant::now();
    let res = match ctx.check_kube(api_version, kind, verb) {
        Err(e) => Err(e),
        Ok(()) => call.await,
    };
    ctx.audit(cap, target, verb, started, &res, 0);
    Ok(res)
}

impl kube::Host for HostState {
    async fn get(&mut self, obj: kube::ObjectRef) -> HostResult<String> {
        let (o, k) = (obj_ref(&obj), self.ctx.kube.clone());
        let r = kube_call(
            self.ctx.clone(),
            "kube.get",
            &obj.api_version,
            &obj.kind,
            "get",
            &obj.name,
            async { k.get(&o).await },
        )
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
        let k = self.ctx.kube.clone();
        let target = format!("{kind} {}", label_selector.clone().unwrap_or_default());
        let r = kube_call(
            self.ctx.clone(),
            "kube.list",
            &api_version,
            &kind,
            "list",
            target.trim(),
            async {
                k.list(
                    &api_version,
                    &kind,
                    namespace.as_deref(),
                    label_selector.as_deref(),
                )
                .await
            },
        )
        .await?;
        Ok(r.map(|v| v.into_iter().map(|o| o.to_string()).collect()))
    }

    async fn apply(&mut self, manifest: String, field_manager: String) -> HostResult<String> {
        let m = match json_arg("apply: the manifest", &manifest) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let field = |p: &str| {
            m.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind) = (field("/apiVersion"), field("/kind"));
        let name = field("/metadata/name");
        let k = self.ctx.kube.clone();
        let r = kube_call(
            self.ctx.clone(),
            "kube.apply",
            &api_version,
            &kind,
            "apply",
            &name,
            async { k.apply(&m, &field_manager).await },
        )
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn patch(&mut self, obj: kube::ObjectRef, merge_patch: String) -> HostResult<String> {
        let p = match json_arg("patch", &merge_patch) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (o, k) = (obj_ref(&obj), self.ctx.kube.clone());
        let r = kube_call(
            self.ctx.clone(),
            "kube.patch",
            &obj.api_version,
            &obj.kind,
            "patch",
            &obj.name,
            async { k.patch(&o, &p).await },
        )
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn delete(&mut self, obj: kube::ObjectRef) -> HostResult<()> {
        let (o, k) = (obj_ref(&obj), self.ctx.kube.clone());
        kube_call(
            self.ctx.clone(),
            "kube.delete",
            &obj.api_version,
            &obj.kind,
            "delete",
            &obj.name,
            async { k.delete(&o).await },
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
        let timeout = Duration::from_millis(timeout_ms).min(self.ctx.limits.timeout);
        let (o, k) = (obj_ref(&obj), self.ctx.kube.clone());
        let r = kube_call(
            self.ctx.clone(),
            "kube.wait-for",
            &obj.api_version,
            &obj.kind,
            "get",
            &obj.name,
            async { k.wait_for(&o, &c, timeout).await },
        )
        .await?;
        Ok(r.map(|v| v.to_string()))
    }

    async fn scale(&mut self, obj: kube::ObjectRef, replicas: u32) -> HostResult<u32> {
        let (o, k) = (obj_ref(&obj), self.ctx.kube.clone());
        kube_call(
            self.ctx.clone(),
            "kube.scale",
            &obj.api_version,
            &obj.kind,
            "patch",
            &obj.name,
            async { k.scale(&o, replicas).await },
        )
        .await
    }
}
