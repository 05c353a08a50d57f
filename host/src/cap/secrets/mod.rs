//! The `secrets` interface: opaque handles. A value is read from where the Workload says
//! when the action starts, lives only in host memory, and is written by the host into a
//! process's environment or a stream; it never enters the guest.

use super::{Backends, CapView, Capability, Grant, Grants, HasCap, HostResult};
use crate::credentials::Credentials;
use crate::model::SecretRef;
use crate::storage::streams::{flush, stream_error_text, write_all};
use crate::wit::abi::secrets::{self, Host, HostSecret, Secret};
use crate::wit::{WitError, retype};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynOutputStream;

/// A secret handle held by a plugin. The guest holds only the table index; the value stays
/// here, for the host to write where the plugin points it.
pub struct SecretHandle {
    pub name: String,
    value: Arc<String>,
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
        credentials: &Credentials,
    ) -> Result<SecretValues, String> {
        let mut values = BTreeMap::new();
        for (name, r) in refs {
            let value = credentials.read(&format!("{owner}: secret {name:?}"), r)?;
            values.insert(name.clone(), Arc::new(value));
        }
        Ok(SecretValues {
            values,
            owner: owner.to_string(),
        })
    }

    /// Values given directly (a cluster's Secrets, the plugin test harness).
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

/// The secret names a plugin may open.
pub struct SecretsGrant(Grant<Vec<String>>);

impl SecretsGrant {
    pub fn new(grants: &Grants) -> SecretsGrant {
        SecretsGrant(Grant::new(grants, |c| c.secrets.clone()))
    }

    pub fn check(&self, name: &str) -> Result<(), WitError> {
        self.0.check(
            |names| names.iter().any(|s| s == name),
            || format!("secret {name:?}"),
            "secrets",
        )
    }
}

pub struct Secrets {
    grant: SecretsGrant,
    values: Arc<SecretValues>,
}

impl Capability for Secrets {
    fn build(grants: &Grants, backends: &Backends) -> Secrets {
        Secrets {
            grant: SecretsGrant::new(grants),
            values: backends.get::<Arc<SecretValues>>().unwrap_or_default(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        secrets::add_to_linker::<T, HasCap<Secrets>>(linker, get)
    }
}

/// The value behind a secret handle the guest passed to another capability (exec puts it in
/// a process's environment).
pub fn secret_value(table: &ResourceTable, h: &Resource<Secret>) -> wasmtime::Result<Arc<String>> {
    Ok(table.get(&retype::<_, SecretHandle>(h))?.value.clone())
}

impl Host for CapView<'_, Secrets> {
    async fn get(&mut self, name: String) -> HostResult<Resource<Secret>> {
        let started = Instant::now();
        let res = self.cap.grant.check(&name).and_then(|()| {
            self.cap.values.get(&name).ok_or_else(|| {
                WitError::NotFound(format!(
                    "{} has no secret named {name:?} (spec.secrets)",
                    self.cap.values.owner
                ))
            })
        });
        self.scope.audit("secrets.get", &name, "", started, &res, 0);
        match res {
            Ok(value) => {
                let h = self.table.push(SecretHandle { name, value })?;
                Ok(Ok(retype(&h)))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

impl HostSecret for CapView<'_, Secrets> {
    async fn name(&mut self, h: Resource<Secret>) -> wasmtime::Result<String> {
        Ok(self.table.get(&retype::<_, SecretHandle>(&h))?.name.clone())
    }

    async fn write_to(
        &mut self,
        h: Resource<Secret>,
        dst: Resource<DynOutputStream>,
    ) -> HostResult<()> {
        let started = Instant::now();
        let handle = self.table.get(&retype::<_, SecretHandle>(&h))?;
        let (name, value) = (handle.name.clone(), handle.value.clone());
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
        self.scope
            .audit("secrets.write-to", &name, "", started, &res, 0);
        Ok(res)
    }

    async fn drop(&mut self, h: Resource<Secret>) -> wasmtime::Result<()> {
        self.table.delete(retype::<_, SecretHandle>(&h))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_manifest::Capabilities;

    #[test]
    fn a_secret_must_be_declared_and_granted() {
        let caps = |names: &[&str]| Capabilities {
            secrets: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let g = SecretsGrant::new(&Grants {
            declared: caps(&["password", "token"]),
            granted: caps(&["password"]),
            plugin: "p".into(),
            blueprint: "bp".into(),
        });
        for (name, ok) in [("password", true), ("token", false), ("other", false)] {
            assert_eq!(g.check(name).is_ok(), ok, "{name}");
        }
    }
}
