//! The cluster's manifest key: a Secret in coffer's namespace, made by the first coffer that
//! needs it. Every daemon replica and `--local-run` CLI signs and checks restore point
//! manifests with it; tenants, who can write RestorePoint resources in their namespaces,
//! cannot read it.

use crate::storage::manifest::ManifestKey;
use anyhow::{Context, Result, anyhow};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

pub const MANIFEST_KEY_SECRET: &str = "coffer-manifest-key";
const KEY: &str = "key";

pub async fn manifest_key(client: &Client, ns: &str) -> Result<ManifestKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for _ in 0..3 {
        if let Some(s) = api
            .get_opt(MANIFEST_KEY_SECRET)
            .await
            .with_context(|| format!("reading Secret {ns}/{MANIFEST_KEY_SECRET}"))?
        {
            let bytes = s
                .data
                .as_ref()
                .and_then(|d| d.get(KEY))
                .map(|b| b.0.clone())
                .ok_or_else(|| anyhow!("Secret {ns}/{MANIFEST_KEY_SECRET} has no key {KEY:?}"))?;
            return ManifestKey::from_bytes(&bytes)
                .with_context(|| format!("Secret {ns}/{MANIFEST_KEY_SECRET}"));
        }
        let key = ManifestKey::generate();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": MANIFEST_KEY_SECRET, "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "coffer"}},
            "type": "Opaque",
        }))?;
        let mut secret = secret;
        secret.data = Some(
            [(KEY.to_string(), ByteString(key.bytes().to_vec()))]
                .into_iter()
                .collect(),
        );
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %format!("{ns}/{MANIFEST_KEY_SECRET}"), "made the manifest key");
                return Ok(key);
            }
            // Another coffer made it first: use theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("creating Secret {ns}/{MANIFEST_KEY_SECRET} (the manifest key)")
                });
            }
        }
    }
    Err(anyhow!(
        "Secret {ns}/{MANIFEST_KEY_SECRET} could not be read or made"
    ))
}
