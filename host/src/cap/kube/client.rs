//! The kube backend on a real cluster (or the API simulator): kube-rs with dynamic objects,
//! so any kind a Blueprint grants can be reached.

use super::{Condition, KubeBackend, ObjRef};
use crate::wit::WitError;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct ClusterKube {
    pub client: Client,
    /// The namespace of objects that do not name one (the subject's).
    pub default_namespace: String,
}

pub(crate) fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// A kube-rs error as the plugin should see it.
pub(crate) fn err(what: &str, e: kube::Error) -> WitError {
    match &e {
        kube::Error::Api(s) => match s.code {
            404 => WitError::NotFound(format!("{what}: {}", s.message)),
            409 => WitError::Conflict(format!("{what}: {}", s.message)),
            403 => WitError::Denied(format!("{what}: the cluster refused: {}", s.message)),
            400 | 422 => WitError::InvalidArgument(format!("{what}: {}", s.message)),
            _ => WitError::Io(format!("{what}: {} ({})", s.message, s.code)),
        },
        _ => WitError::Io(format!("{what}: {e}")),
    }
}

fn to_json(o: DynamicObject) -> Result<Value, WitError> {
    serde_json::to_value(o).map_err(|e| WitError::Internal(format!("encoding an object: {e}")))
}

impl ClusterKube {
    fn api(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = resource(api_version, kind);
        Api::namespaced_with(
            self.client.clone(),
            namespace.unwrap_or(&self.default_namespace),
            &ar,
        )
    }

    fn api_for(&self, o: &ObjRef) -> Api<DynamicObject> {
        self.api(&o.api_version, &o.kind, o.namespace.as_deref())
    }

    async fn get_opt(&self, o: &ObjRef) -> Result<Option<Value>, WitError> {
        match self.api_for(o).get_opt(&o.name).await {
            Ok(Some(x)) => to_json(x).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(err(&format!("get {} {}", o.kind, o.name), e)),
        }
    }
}

#[async_trait::async_trait]
impl KubeBackend for ClusterKube {
    fn home_namespace(&self) -> Option<&str> {
        Some(&self.default_namespace)
    }

    fn url(&self, o: &ObjRef) -> String {
        format!("{}/{}", self.api_for(o).resource_url(), o.name)
    }

    async fn get(&self, o: &ObjRef) -> Result<Value, WitError> {
        let x = self
            .api_for(o)
            .get(&o.name)
            .await
            .map_err(|e| err(&format!("get {} {}", o.kind, o.name), e))?;
        to_json(x)
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, WitError> {
        let mut lp = ListParams::default();
        if let Some(s) = label_selector {
            lp = lp.labels(s);
        }
        let list = self
            .api(api_version, kind, namespace)
            .list(&lp)
            .await
            .map_err(|e| err(&format!("list {kind}"), e))?;
        list.items.into_iter().map(to_json).collect()
    }

    async fn apply(&self, manifest: &Value, field_manager: &str) -> Result<Value, WitError> {
        let field = |p: &str| manifest.pointer(p).and_then(Value::as_str);
        let (Some(av), Some(kind), Some(name)) = (
            field("/apiVersion"),
            field("/kind"),
            field("/metadata/name"),
        ) else {
            return Err(WitError::InvalidArgument(
                "apply: the manifest needs apiVersion, kind and metadata.name".into(),
            ));
        };
        let api = self.api(av, kind, field("/metadata/namespace"));
        let x = api
            .patch(
                name,
                &PatchParams::apply(field_manager).force(),
                &Patch::Apply(manifest),
            )
            .await
            .map_err(|e| err(&format!("apply {kind} {name}"), e))?;
        to_json(x)
    }

    async fn patch(&self, o: &ObjRef, merge_patch: &Value) -> Result<Value, WitError> {
        let x = self
            .api_for(o)
            .patch(&o.name, &PatchParams::default(), &Patch::Merge(merge_patch))
            .await
            .map_err(|e| err(&format!("patch {} {}", o.kind, o.name), e))?;
        to_json(x)
    }

    async fn delete(&self, o: &ObjRef) -> Result<(), WitError> {
        self.api_for(o)
            .delete(&o.name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| err(&format!("delete {} {}", o.kind, o.name), e))
    }

    async fn wait_for(
        &self,
        o: &ObjRef,
        c: &Condition,
        timeout: Duration,
    ) -> Result<Value, WitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.get_opt(o).await?;
            if c.holds(current.as_ref()) {
                return Ok(current.unwrap_or(Value::Null));
            }
            if Instant::now() >= deadline {
                return Err(WitError::Timeout(format!(
                    "{} {}: {c:?} did not hold within {} ms",
                    o.kind,
                    o.name,
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn scale(&self, o: &ObjRef, replicas: u32) -> Result<u32, WitError> {
        let current = self.get(o).await?;
        let previous = current
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as u32;
        self.patch(o, &serde_json::json!({"spec": {"replicas": replicas}}))
            .await?;
        Ok(previous)
    }
}
