//! The host's own credentials: secret references (`file`, `env`, or a Kubernetes Secret's
//! key) read when an action or a Profile needs them. Plugins never see these; they get
//! opaque handles through the `secrets` capability.
//!
//! A [`Credentials`] is handed to whatever reads a reference (a Profile being opened, a
//! Workload's secrets); it holds the Secret values read from a cluster for this process's
//! work (the daemon reads a Profile's before using it), in memory only, never written out.

use crate::model::{SecretKeyRef, SecretRef};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Default)]
pub struct Credentials {
    cluster: Arc<RwLock<BTreeMap<SecretKeyRef, Arc<String>>>>,
}

impl Credentials {
    /// Files and environment variables only (local mode).
    pub fn local() -> Credentials {
        Credentials::default()
    }

    /// Keep a Secret value read from the cluster, for `secret:` references.
    pub fn remember_cluster_secret(&self, r: &SecretKeyRef, value: String) {
        self.cluster
            .write()
            .unwrap()
            .insert(r.clone(), Arc::new(value));
    }

    /// Read one secret reference now. `what` names it in errors (e.g. `Profile s3:
    /// spec.credentials.secretAccessKey`); the value never appears in them.
    pub fn read(&self, what: &str, r: &SecretRef) -> Result<String, String> {
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
            (_, _, Some(k)) => self
                .cluster
                .read()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_from_files_env_and_remembered_secrets_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = Credentials::local();
        let file_ref = SecretRef {
            file: Some(file),
            env: None,
            secret: None,
        };
        assert_eq!(c.read("x", &file_ref).unwrap(), "from-file");
        let k = SecretKeyRef {
            name: "s3".into(),
            key: "secret".into(),
        };
        let secret_ref = SecretRef {
            file: None,
            env: None,
            secret: Some(k.clone()),
        };
        let e = c.read("Profile p: spec.credentials.secretAccessKey", &secret_ref);
        assert!(e.unwrap_err().contains("was not read from a cluster"));
        c.remember_cluster_secret(&k, "from-cluster".into());
        assert_eq!(c.read("x", &secret_ref).unwrap(), "from-cluster");
        // Another instance does not see it: nothing is process-global.
        assert!(Credentials::local().read("x", &secret_ref).is_err());
    }
}
