//! The `secrets` interface: opaque handles. A value is read from where the Workload says
//! when the action starts, lives only in host memory, and is written by the host into a
//! process's environment or a stream; it never enters the guest.

use super::HostResult;
use super::streams::{flush, stream_error_text, write_all};
use crate::model::SecretRef;
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::coffer::blueprint::secrets::{Host, HostSecret};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynOutputStream;

/// A secret handle held by a plugin: a name, never the value.
pub struct SecretHandle {
    pub name: String,
}

/// The resolved secret values of one action.
#[derive(Default)]
pub struct SecretValues {
    values: BTreeMap<String, Arc<String>>,
    /// Where the secrets came from, for error messages (e.g. `Workload shop-db`).
    pub owner: String,
}

impl SecretValues {
    /// Read every secret a workload references. Errors name the secret and the source.
    pub fn resolve(
        owner: &str,
        refs: &BTreeMap<String, SecretRef>,
    ) -> Result<SecretValues, String> {
        let mut values = BTreeMap::new();
        for (name, r) in refs {
            let value = read_secret_ref(&format!("{owner}: secret {name:?}"), r)?;
            values.insert(name.clone(), Arc::new(value));
        }
        Ok(SecretValues {
            values,
            owner: owner.to_string(),
        })
    }

    /// Values given directly (the plugin test harness).
    pub fn from_values(owner: &str, values: &BTreeMap<String, String>) -> SecretValues {
        SecretValues {
            values: values
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect(),
            owner: owner.to_string(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<String>> {
        self.values.get(name).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(|v| v.as_str())
    }
}

/// Read one secret reference now. `what` names it in errors (e.g. `Profile s3:
/// spec.credentials.secretAccessKey`); the value never appears in them.
/// Values of Kubernetes Secrets this process read from its cluster (the daemon reads a
/// Profile's before using it), by (name, key). Kept in memory only, never written out.
static CLUSTER_SECRETS: std::sync::LazyLock<
    std::sync::Mutex<BTreeMap<crate::model::SecretKeyRef, Arc<String>>>,
> = std::sync::LazyLock::new(Default::default);

/// Remember a Secret value read from the cluster, for `secret:` references.
pub fn remember_cluster_secret(r: &crate::model::SecretKeyRef, value: String) {
    CLUSTER_SECRETS
        .lock()
        .unwrap()
        .insert(r.clone(), Arc::new(value));
}

pub fn read_secret_ref(what: &str, r: &SecretRef) -> Result<String, String> {
    if !r.is_well_formed() {
        return Err(format!(
            "{what}: give exactly one of `file`, `env` or (on Kubernetes) `secret`"
        ));
    }
    let value = match (&r.file, &r.env, &r.secret) {
        (Some(path), _, _) => std::fs::read_to_string(path)
            .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?,
        (_, Some(var), _) => std::env::var(var)
            .map_err(|_| format!("{what}: environment variable {var} is not set"))?,
        (_, _, Some(k)) => CLUSTER_SECRETS
            .lock()
            .unwrap()
            .get(k)
            .map(|v| v.to_string())
            .ok_or_else(|| {
                format!(
                    "{what}: Secret {} key {} was not read from a cluster; `secret` references work on Kubernetes (coffer daemon, --kubeconfig); in local mode use `file` or `env`",
                    k.name, k.key
                )
            })?,
        _ => unreachable!("checked well-formed"),
    };
    let value = value.strip_suffix('\n').unwrap_or(&value);
    Ok(value.strip_suffix('\r').unwrap_or(value).to_string())
}

impl HostState {
    /// The value behind a handle the guest passed in.
    pub fn secret_value(
        &self,
        handle: &Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<Arc<String>, WitError>> {
        let name = &self.table.get(handle)?.name;
        Ok(self
            .ctx
            .secrets
            .get(name)
            .ok_or_else(|| WitError::NotFound(format!("secret {name:?}"))))
    }
}

impl Host for HostState {
    async fn get(&mut self, name: String) -> HostResult<Resource<SecretHandle>> {
        let started = Instant::now();
        let res = match self.ctx.check_secret(&name) {
            Err(e) => Err(e),
            Ok(()) if self.ctx.secrets.get(&name).is_none() => Err(WitError::NotFound(format!(
                "{} has no secret named {name:?} (spec.secrets)",
                self.ctx.secrets.owner
            ))),
            Ok(()) => Ok(()),
        };
        self.ctx.audit("secrets.get", &name, "", started, &res, 0);
        match res {
            Ok(()) => Ok(Ok(self.table.push(SecretHandle { name })?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl HostSecret for HostState {
    async fn name(&mut self, h: Resource<SecretHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&h)?.name.clone())
    }

    async fn write_to(
        &mut self,
        h: Resource<SecretHandle>,
        dst: Resource<DynOutputStream>,
    ) -> HostResult<()> {
        let started = Instant::now();
        let value = match self.secret_value(&h)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let name = self.table.get(&h)?.name.clone();
        let stream = self.table.get_mut(&dst)?;
        let mut res = write_all(stream, bytes::Bytes::copy_from_slice(value.as_bytes())).await;
        if res.is_ok() {
            res = flush(stream).await;
        }
        let res = res.map_err(|e| {
            WitError::Io(format!(
                "writing secret {name:?}: {}",
                stream_error_text(&e)
            ))
        });
        self.ctx
            .audit("secrets.write-to", &name, "", started, &res, 0);
        Ok(res)
    }

    async fn drop(&mut self, h: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}
