//! The host's own credentials: secret references (`file`, `env`, or a Kubernetes Secret's
//! key) read when an action or a Profile needs them. Plugins never see these; they get
//! opaque handles through the `secrets` capability.

use crate::model::SecretRef;
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// Read one secret reference now. `what` names it in errors (e.g. `Profile s3:
/// spec.credentials.secretAccessKey`); the value never appears in them.
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
