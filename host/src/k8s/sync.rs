//! What an action on a cluster reads before it runs: the Blueprint bound to a workload,
//! coffer's resources copied into the local catalog the action runs on, and Secrets (a
//! Profile's `secret:` references, a workload's annotated plugin secrets).

use super::{api, to_object};
use crate::action::Coffer;
use crate::binding::{Resolution, WorkloadInfo, resolve};
use crate::model::{BlueprintBinding, BlueprintBindingSpec, Empty, Kind, RestorePointSpec};
use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};

pub(super) fn gvk_api(
    client: &Client,
    ns: &str,
    api_version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let ar = crate::cap::kube::client::resource(api_version, kind);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// The Blueprint protecting a workload, and how it was found.
pub async fn resolve_blueprint(
    client: &Client,
    config_ns: &str,
    info: &WorkloadInfo,
) -> Result<Resolution> {
    let list = api(client, "BlueprintBinding", config_ns)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing BlueprintBindings in namespace {config_ns}"))?;
    let mut bindings: Vec<BlueprintBinding> = Vec::new();
    for o in &list.items {
        match to_object::<BlueprintBindingSpec, Empty>(Kind::BlueprintBinding, o) {
            Ok(b) => bindings.push(b),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "ignoring a BlueprintBinding that does not parse")
            }
        }
    }
    Ok(resolve(info, &bindings))
}

/// Copy a coffer resource from the cluster into the local catalog the action runs on; a
/// Blueprint missing on the cluster may still be a built-in one.
pub(super) async fn sync(
    coffer: &Coffer,
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
) -> Result<bool> {
    let found = api(client, kind.as_str(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading {kind} {ns}/{name}"))?;
    match found {
        Some(o) => {
            let value = match kind {
                Kind::Blueprint => serde_json::to_value(to_object::<
                    crate::model::BlueprintSpec,
                    Empty,
                >(kind, &o)?)?,
                Kind::Profile => {
                    let p = to_object::<crate::model::ProfileSpec, Empty>(kind, &o)?;
                    read_profile_secrets(coffer, client, ns, name, &p.spec).await?;
                    serde_json::to_value(p)?
                }
                Kind::RestorePoint => {
                    serde_json::to_value(to_object::<RestorePointSpec, Empty>(kind, &o)?)?
                }
                _ => bail!("{kind} is not synced"),
            };
            coffer.catalog.put(kind, name, &value)?;
            Ok(true)
        }
        None => {
            coffer.catalog.delete(kind, name)?;
            Ok(false)
        }
    }
}

/// A Profile's `secret:` references, read from Secrets in its namespace into memory, where
/// the location code finds them.
async fn read_profile_secrets(
    coffer: &Coffer,
    client: &Client,
    ns: &str,
    profile: &str,
    spec: &crate::model::ProfileSpec,
) -> Result<()> {
    let mut refs: Vec<(&str, &crate::model::SecretRef)> = Vec::new();
    if let Some(c) = &spec.credentials {
        for (field, r) in [
            ("credentials.accessKeyId", &c.access_key_id),
            ("credentials.secretAccessKey", &c.secret_access_key),
            ("credentials.sessionToken", &c.session_token),
            ("credentials.serviceAccountKey", &c.service_account_key),
            ("credentials.accessKey", &c.access_key),
        ] {
            if let Some(r) = r {
                refs.push((field, r));
            }
        }
    }
    if let Some(crate::model::EncryptionSpec::Age(a)) = &spec.encryption
        && let Some(id) = &a.identity
    {
        refs.push(("encryption.identity", id));
    }
    for (field, r) in refs {
        let Some(k) = &r.secret else { continue };
        let purpose = format!("Profile {ns}/{profile} spec.{field}");
        let value = read_secret(client, ns, &purpose, &k.name, &k.key).await?;
        coffer.credentials.remember_cluster_secret(k, value);
    }
    Ok(())
}

/// A Secret's key as text; `purpose` says who wanted it, for errors.
pub(super) async fn read_secret(
    client: &Client,
    ns: &str,
    purpose: &str,
    secret: &str,
    key: &str,
) -> Result<String> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(secret)
        .await
        .with_context(|| format!("reading Secret {ns}/{secret}"))?
        .ok_or_else(|| anyhow!("Secret {ns}/{secret} (for {purpose}) not found"))?;
    let bytes = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.clone().into_bytes())
        })
        .ok_or_else(|| anyhow!("Secret {ns}/{secret} has no key {key:?} (for {purpose})"))?;
    let mut v = String::from_utf8(bytes)
        .map_err(|_| anyhow!("Secret {ns}/{secret} key {key:?} is not UTF-8 text"))?;
    if v.ends_with('\n') {
        v.pop();
    }
    Ok(v)
}
