//! Backing up and restoring from the dashboard on Kubernetes: an ActionSet in the
//! workload's namespace, created only when the API server says the viewer may create
//! ActionSets there (and, for a restore into another namespace, there too). The daemon
//! then runs it as it runs any ActionSet, with every check it applies to one a tenant
//! made with kubectl.

use super::ClusterUi;
use super::access::Viewer;
use crate::k8s::kinds::{ActionSetResource, RestorePointResource};
use crate::model::ActionSetSpec;
use crate::ui::kube_auth::Ask;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

/// On an ActionSet the dashboard made: who asked (informational; the API server's audit
/// log records the daemon's ServiceAccount as its creator).
pub const REQUESTED_BY_ANNOTATION: &str = "coffer.dev/requested-by";

/// Why nothing was started.
#[derive(Debug)]
pub enum Refusal {
    /// The viewer may not (403).
    Forbidden(String),
    /// The request names something wrong (422).
    Invalid(String),
    /// What it names does not exist (404).
    Missing(String),
    /// The API server failed (502).
    Failed(anyhow::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Forbidden(m) | Refusal::Invalid(m) | Refusal::Missing(m) => f.write_str(m),
            Refusal::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// What to start.
#[derive(Debug, Default)]
pub struct Start {
    /// `backup` or `restore`.
    pub action: String,
    pub namespace: String,
    /// `kind/name`.
    pub workload: String,
    pub restore_point: Option<String>,
    pub target_namespace: Option<String>,
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// The workload `kind/name` checked and in the form ActionSets name it (`statefulset/pg`).
pub fn subject(kind: &str, name: &str) -> Result<String, Refusal> {
    let (k, n) = crate::k8s::parse_subject(&format!("{kind}/{name}"))
        .map_err(|e| Refusal::Invalid(format!("{e:#}")))?;
    Ok(format!("{}/{n}", k.kind.to_ascii_lowercase()))
}

fn namespace_ok(ns: &str) -> Result<(), Refusal> {
    if crate::model::names::is_label(ns) {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!(
            "{ns:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
        )))
    }
}

async fn may_create(ui: &ClusterUi, v: &Viewer, ns: &str) -> Result<(), Refusal> {
    let ask = Ask {
        verb: "create",
        resource: "actionsets",
        namespace: Some(ns),
        name: None,
    };
    match ui.access.may(v, &ask).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(Refusal::Forbidden(why)),
        Err(e) => Err(Refusal::Failed(e)),
    }
}

/// Create the ActionSet `s` asks for, as `v` may; the answer is it as created.
pub async fn start(ui: &ClusterUi, v: &Viewer, s: Start) -> Result<ActionSetResource, Refusal> {
    namespace_ok(&s.namespace)?;
    let (kind, name) = s
        .workload
        .split_once('/')
        .ok_or_else(|| Refusal::Invalid(format!("{:?}: expected kind/name", s.workload)))?;
    let workload = subject(kind, name)?;
    may_create(ui, v, &s.namespace).await?;
    if let Some(t) = &s.target_namespace {
        namespace_ok(t)?;
        // The data there is overwritten: the viewer must be someone who may act there.
        may_create(ui, v, t).await?;
    }
    match (s.action.as_str(), &s.restore_point) {
        ("backup", None) => {}
        ("restore", Some(rp)) => {
            let found = Api::<RestorePointResource>::namespaced(ui.client.clone(), &s.namespace)
                .get_opt(rp)
                .await
                .map_err(|e| Refusal::Failed(anyhow::Error::new(e).context(format!("reading RestorePoint {}/{rp}", s.namespace))))?
                .ok_or_else(|| Refusal::Missing(format!("RestorePoint {}/{rp} not found; the application's page lists its restore points", s.namespace)))?;
            if found.spec.workload != workload {
                return Err(Refusal::Invalid(format!(
                    "RestorePoint {}/{rp} is of {}, not of {workload}",
                    s.namespace, found.spec.workload
                )));
            }
        }
        ("restore", None) => {
            return Err(Refusal::Invalid(
                "a restore needs a restorePoint (one of the application's RestorePoints)".into(),
            ));
        }
        (a, _) => {
            return Err(Refusal::Invalid(format!(
                "{a:?}: the dashboard starts backup, or restore with a restorePoint"
            )));
        }
    }
    let obj = ActionSetResource {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{name}-", s.action)),
            annotations: Some(
                [(REQUESTED_BY_ANNOTATION.to_string(), v.user.name.clone())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: ActionSetSpec {
            action: s.action.clone(),
            workload: workload.clone(),
            blueprint: String::new(),
            profile: String::new(),
            restore_point: s.restore_point.clone(),
            params: if s.params.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Object(s.params)
            },
            cancel: false,
            deadline: None,
            target_namespace: s.target_namespace.clone(),
        },
        status: None,
    };
    let created = Api::<ActionSetResource>::namespaced(ui.client.clone(), &s.namespace)
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| {
            Refusal::Failed(anyhow::Error::new(e).context(format!(
                "creating an ActionSet in namespace {}",
                s.namespace
            )))
        })?;
    tracing::info!(
        actionset = created.metadata.name.as_deref().unwrap_or_default(),
        namespace = %s.namespace,
        user = %v.user.name,
        action = %s.action,
        workload = %workload,
        "dashboard started an action"
    );
    Ok(created)
}

/// The newest of the workload's RestorePoints in `ns` taken at or before `at`, for a
/// viewer who may list RestorePoints there.
pub async fn restore_point_at(
    ui: &ClusterUi,
    v: &Viewer,
    ns: &str,
    workload: &str,
    at: &str,
) -> Result<crate::action::at::Chosen, Refusal> {
    namespace_ok(ns)?;
    let ask = Ask {
        verb: "list",
        resource: "restorepoints",
        namespace: Some(ns),
        name: None,
    };
    match ui.access.may(v, &ask).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(Refusal::Forbidden(why)),
        Err(e) => return Err(Refusal::Failed(e)),
    }
    let all = Api::<RestorePointResource>::namespaced(ui.client.clone(), ns)
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| {
            Refusal::Failed(
                anyhow::Error::new(e).context(format!("listing RestorePoints in namespace {ns}")),
            )
        })?
        .items;
    crate::action::at::newest_at(
        all.iter().filter(|r| r.spec.workload == workload).map(|r| {
            (
                r.metadata.name.as_deref().unwrap_or_default(),
                r.spec.start_time.as_str(),
            )
        }),
        at,
        &format!("{workload} in namespace {ns}"),
        "the application's page",
    )
    .map_err(|e| Refusal::Invalid(format!("{e:#}")))
}
