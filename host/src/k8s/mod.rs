//! Kubernetes mode: coffer's kinds as typed custom resources (`coffer.dev/v1alpha1`,
//! `kinds`), an ActionSet's inputs read from the cluster (`resolve`), its record kept in its
//! own resources (`record`), running it (`run`), and the controller daemon (`daemon`, its
//! decisions in `decide`). The CLI verbs against a cluster are in `cli::cluster`.

pub mod application;
pub mod crd;
pub mod daemon;
mod decide;
mod env_secret;
mod error;
pub mod keys;
pub mod kinds;
mod lease;
#[cfg(test)]
mod mock;
pub mod movers;
mod orphan_guards;
pub mod policies;
mod profile_check;
pub mod record;
pub mod resolve;
pub mod run;
mod settle;

pub use error::Error;

use anyhow::{Context, Result, bail};
use kube::api::ApiResource;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::PathBuf;

pub const GROUP: &str = "coffer.dev";
pub const VERSION: &str = "v1alpha1";
/// Held by an ActionSet while it runs, so deleting it first cancels the action.
pub const FINALIZER: &str = "coffer.dev/actionset";
/// On a workload: the Profile its backups go to (else the one named `default`).
pub const PROFILE_ANNOTATION: &str = "coffer.dev/profile";
/// On a workload, `secret.coffer.dev/<name>: <secret>/<key>`: where the plugin's secret
/// `<name>` is read from (a Secret in the workload's namespace).
pub const SECRET_ANNOTATION_PREFIX: &str = "secret.coffer.dev/";

/// Where Blueprints, Profiles and BlueprintBindings live on a cluster (and the daemon's
/// Lease): COFFER_NAMESPACE, default `coffer`.
pub fn config_namespace() -> String {
    std::env::var("COFFER_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "coffer".into())
}

/// Which cluster: a kubeconfig file and/or context, else the usual (KUBECONFIG,
/// ~/.kube/config, in-cluster service account).
#[derive(Debug, Clone, Default)]
pub struct ClusterTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl ClusterTarget {
    /// A client and the context's default namespace.
    pub async fn connect(&self) -> Result<(Client, String)> {
        let (client, ns, _) = self.connect_with_config().await?;
        Ok((client, ns))
    }

    /// Also the configuration, for clients acting as another identity (plugins' kube calls
    /// impersonate a ServiceAccount, see [`plugin_client`]).
    pub async fn connect_with_config(&self) -> Result<(Client, String, Config)> {
        let opts = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .with_context(|| format!("loading the kubeconfig {}", path.display()))?
            }
            None if self.context.is_some() => Config::from_kubeconfig(&opts)
                .await
                .context("loading the kubeconfig (KUBECONFIG or ~/.kube/config)")?,
            None => Config::infer()
                .await
                .context("finding a cluster (give --kubeconfig, or run in a pod)")?,
        };
        let ns = config.default_namespace.clone();
        let client = Client::try_from(config.clone()).context("creating the Kubernetes client")?;
        Ok((client, ns, config))
    }
}

/// The ServiceAccount a plugin's kube calls act as when its Blueprint names none.
pub const PLUGIN_SERVICE_ACCOUNT: &str = "coffer-plugin";

/// A client that impersonates ServiceAccount `sa` of namespace `ns`: what a plugin's kube
/// calls use, so they can do only what that account's RBAC allows, never what the daemon's
/// own identity may (every namespace, Profile Secrets).
pub fn plugin_client(config: &Config, ns: &str, sa: &str) -> Result<Client> {
    if !crate::model::names::is_subdomain(sa) {
        bail!("ServiceAccount name {sa:?} is not a valid Kubernetes name");
    }
    let mut c = config.clone();
    c.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:{sa}"));
    c.auth_info.impersonate_groups = None;
    Client::try_from(c).context("creating the plugin's Kubernetes client")
}

/// The API resource of one of coffer's kinds (plural as the CRD names it: `policies`).
pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(GROUP, VERSION, kind))
}

/// A workload kind the CLI and ActionSets name as `kind/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKind {
    pub api_version: &'static str,
    pub kind: &'static str,
}

/// `statefulset/pg` (also `sts/pg`, `StatefulSet/pg`, `deploy/web`, `pod/x`...).
pub fn parse_subject(s: &str) -> Result<(SubjectKind, String)> {
    let Some((kind, name)) = s.split_once('/') else {
        bail!("{s:?}: name the workload as kind/name, e.g. statefulset/pg or deployment/web");
    };
    let k = match kind.to_ascii_lowercase().as_str() {
        "statefulset" | "statefulsets" | "sts" => SubjectKind {
            api_version: "apps/v1",
            kind: "StatefulSet",
        },
        "deployment" | "deployments" | "deploy" => SubjectKind {
            api_version: "apps/v1",
            kind: "Deployment",
        },
        "replicaset" | "replicasets" | "rs" => SubjectKind {
            api_version: "apps/v1",
            kind: "ReplicaSet",
        },
        "daemonset" | "daemonsets" | "ds" => SubjectKind {
            api_version: "apps/v1",
            kind: "DaemonSet",
        },
        "pod" | "pods" | "po" => SubjectKind {
            api_version: "v1",
            kind: "Pod",
        },
        // A Crunchy PGO cluster: its commands run in its pgBackRest repo host.
        "postgrescluster" | "postgresclusters" => SubjectKind {
            api_version: "postgres-operator.crunchydata.com/v1beta1",
            kind: "PostgresCluster",
        },
        // K8ssandra: the k8ssandra operator backs up and restores through Medusa.
        "cassandradatacenter" | "cassandradatacenters" | "cassdc" => SubjectKind {
            api_version: "cassandra.datastax.com/v1beta1",
            kind: "CassandraDatacenter",
        },
        "k8ssandracluster" | "k8ssandraclusters" | "k8c" => SubjectKind {
            api_version: "k8ssandra.io/v1alpha1",
            kind: "K8ssandraCluster",
        },
        // What runs outside the cluster (an RDS database): no pods, its params in its data.
        "configmap" | "configmaps" | "cm" => SubjectKind {
            api_version: "v1",
            kind: "ConfigMap",
        },
        other => bail!(
            "{s:?}: workload kind {other:?} is not one of statefulset, deployment, replicaset, daemonset, pod, postgrescluster, cassandradatacenter, k8ssandracluster, configmap"
        ),
    };
    if !crate::model::names::is_subdomain(name) {
        bail!(
            "{s:?}: the name after the kind must be a Kubernetes object name (lowercase letters, digits, '-' and '.')"
        );
    }
    Ok((k, name.to_string()))
}
