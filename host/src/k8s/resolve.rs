//! What an ActionSet needs, read from the cluster as it is now (nothing is copied into a
//! local catalog): its subject, the Blueprint protecting it (a BlueprintBinding, else its
//! annotation, else the restore point's), the Profile and the Secret values its credentials
//! name, the restore point it works on, the plugin's secrets, and the backends that act on
//! the cluster. The engine then runs it with a [`ClusterRecord`](super::record::ClusterRecord).

use super::env_secret::{self, EnvSource};
use super::kinds::{
    self, ActionSetResource, BlueprintBindingResource, BlueprintResource, ProfileResource,
    RestorePointResource,
};
use super::run::ClusterCtx;
use super::{PROFILE_ANNOTATION, SECRET_ANNOTATION_PREFIX, parse_subject};
use crate::action::{ActionRequest, ClusterSubject, Coffer, PreparedAction};
use crate::binding::{Resolution, WorkloadInfo, resolve};
use crate::cap::Backends;
use crate::cap::exec::{
    DEFAULT_CONTAINER_ANNOTATION, ExecBackend, PodExec, PodTarget, choose_container,
};
use crate::cap::kube::KubeBackend;
use crate::cap::kube::client::ClusterKube;
use crate::cap::snapshot::SnapshotBackend;
use crate::cap::snapshot::csi::CsiSnapshots;
use crate::credentials::Credentials;
use crate::model::{ActionKind, Kind, ProfileSpec, SecretRef, Workload, WorkloadSpec};
use crate::wit::abi::types::ObjectRef;
use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{PodSpec, Secret};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The Blueprint protecting a workload, and how it was found.
pub async fn resolve_blueprint(
    client: &Client,
    config_ns: &str,
    info: &WorkloadInfo,
) -> Result<Resolution> {
    let list = Api::<BlueprintBindingResource>::namespaced(client.clone(), config_ns)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing BlueprintBindings in namespace {config_ns}"))?;
    let bindings: Vec<_> = list.items.iter().map(kinds::binding).collect();
    Ok(resolve(info, &bindings))
}

/// A Blueprint of the config namespace, else a built-in one.
async fn blueprint(
    coffer: &Coffer,
    cx: &ClusterCtx,
    name: &str,
) -> Result<crate::model::Blueprint> {
    let found = Api::<BlueprintResource>::namespaced(cx.client.clone(), &cx.config_ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading Blueprint {}/{name}", cx.config_ns))?;
    match found {
        Some(b) => Ok(kinds::blueprint(&b)),
        None => coffer.builtin_blueprint(name)?.ok_or_else(|| {
            anyhow!(
                "Blueprint {name} not found in namespace {} (and it is not a built-in one)",
                cx.config_ns
            )
        }),
    }
}

/// Recreate the application's resources recorded with restore point `rp` of namespace
/// `source` (as its authenticated manifest has them) in namespace `target`.
async fn restore_application(
    coffer: &Coffer,
    cx: &ClusterCtx,
    rp: &crate::model::RestorePoint,
    expected: (&str, &str),
    (source, target): (&str, &str),
) -> Result<()> {
    use crate::storage::pipeline::{self, Pin, Sink};
    let (profile, credentials) = profile(cx, &rp.spec.profile, true).await?;
    let loc = crate::storage::Location::from_profile(&profile, &credentials)?;
    let m = coffer
        .authenticate(rp.clone(), &loc, Some(expected), ActionKind::Restore.name())
        .await?;
    let Some(app) = &m.spec.application else {
        return Ok(());
    };
    let obj = m
        .spec
        .objects
        .iter()
        .find(|o| o.key == app.key)
        .ok_or_else(|| {
            anyhow!(
                "RestorePoint {}: its manifest lists no object {}",
                rp.name(),
                app.key
            )
        })?;
    let path = object_store::path::Path::parse(format!("{}/{}", m.spec.prefix, obj.stored_key))?;
    let mut document = Vec::new();
    pipeline::download(
        loc.store.as_ref(),
        &path,
        obj,
        Sink::Buffer(&mut document, 64 << 20),
        None,
        loc.encryption.as_ref(),
        Pin::Any,
    )
    .await
    .map_err(|e| {
        anyhow!(
            "reading the application's resources of RestorePoint {}: {e}",
            rp.name()
        )
    })?;
    let r = super::application::recreate(&cx.client, source, target, &document).await?;
    tracing::info!(namespace = %target, created = ?r.created, kept = ?r.kept, "application resources restored");
    Ok(())
}

/// Which container commands run in.
const CONTAINER_ANNOTATION: &str = "coffer.dev/container";

/// The first of `names` the subject's container sets, and where its value is.
fn from_env(
    obj: &DynamicObject,
    wanted: Option<&str>,
    names: &[String],
) -> Result<Option<(String, EnvSource)>> {
    let (spec, meta) = super::application::pod_template(&obj.data);
    let spec: PodSpec = serde_json::from_value(spec.clone()).context("reading the pod template")?;
    let default = meta["annotations"][DEFAULT_CONTAINER_ANNOTATION].as_str();
    let c =
        choose_container(&spec, wanted, default).map_err(|e| anyhow!("the pod template {e}"))?;
    env_secret::find(&spec, c, names).map_err(|e| anyhow!("container {}: {e}", c.name))
}

/// A Profile of the config namespace, with the Secret values its credentials name read
/// into a [`Credentials`] of this action's own.
/// With `refuse_failed`, a Profile whose current generation failed the daemon's last
/// validation is refused at once (`profile_check`).
pub(super) async fn profile(
    cx: &ClusterCtx,
    name: &str,
    refuse_failed: bool,
) -> Result<(crate::model::Profile, Credentials)> {
    let found = Api::<ProfileResource>::namespaced(cx.client.clone(), &cx.config_ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading Profile {}/{name}", cx.config_ns))?
        .ok_or_else(|| {
            anyhow!(
                "Profile {name} not found in namespace {}: create it there (see deploy/examples/profile.yaml), or name another with spec.profile or the {PROFILE_ANNOTATION} annotation",
                cx.config_ns
            )
        })?;
    if refuse_failed {
        super::profile_check::refuse_if_failed(&found)?;
    }
    let profile = kinds::profile(&found);
    let credentials = Credentials::local();
    for (field, r) in secret_refs(&profile.spec) {
        let Some(k) = &r.secret else { continue };
        let purpose = format!("Profile {}/{name} spec.{field}", cx.config_ns);
        let value = read_secret(&cx.client, &cx.config_ns, &purpose, &k.name, &k.key).await?;
        credentials.remember_cluster_secret(k, value);
    }
    Ok((profile, credentials))
}

/// A ConfigMap subject's params, as a local Workload's `spec.params`: `data.params` is a
/// YAML map of action name to params (`backup: {instance: shop, region: eu-west-1}`).
fn config_map_params(
    obj: &kube::api::DynamicObject,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let Some(text) = obj.data["data"]["params"].as_str() else {
        return Ok(BTreeMap::new());
    };
    let params: BTreeMap<String, serde_json::Value> = serde_yaml_ng::from_str(text)
        .map_err(|e| anyhow!("not a map of action to params ({e}); write e.g. `backup: {{instance: shop, region: eu-west-1}}`"))?;
    if let Some((action, p)) = params.iter().find(|(_, p)| !p.is_object()) {
        bail!("params of {action:?} must be a map, found {p}");
    }
    Ok(params)
}

/// The Signers `blueprint` grants, from the config namespace, with the Secret values their
/// credentials name read: what its plugin's `signed-http` calls are signed with. None
/// when it grants none.
async fn signers(
    cx: &ClusterCtx,
    blueprint: &crate::model::Blueprint,
) -> Result<Option<crate::cap::signed_http::Signers>> {
    let names: Vec<&str> = blueprint
        .spec
        .grants
        .signed_http
        .iter()
        .map(|g| g.signer())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let why = format!("which Blueprint {} grants", blueprint.name());
    signers_named(cx, &names, &why).await.map(Some)
}

/// The Signers `names` from the config namespace, with the Secret values their credentials
/// name read; `why` says why each is needed, for the error when one is missing.
pub(super) async fn signers_named(
    cx: &ClusterCtx,
    names: &[&str],
    why: &str,
) -> Result<crate::cap::signed_http::Signers> {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    let api = Api::<kinds::SignerResource>::namespaced(cx.client.clone(), &cx.config_ns);
    let mut ready = Vec::new();
    for n in names {
        let found = api
            .get_opt(n)
            .await
            .with_context(|| format!("reading Signer {}/{n}", cx.config_ns))?
            .ok_or_else(|| {
                anyhow!(
                    "Signer {n}, {why}, not found in namespace {}: create it there (docs/signed-http.md)",
                    cx.config_ns
                )
            })?;
        let signer = kinds::signer(&found);
        let credentials = Credentials::local();
        if let Some(c) = &signer.spec.credentials {
            let refs = [
                ("accessKeyId", Some(&c.access_key_id)),
                ("secretAccessKey", Some(&c.secret_access_key)),
                ("sessionToken", c.session_token.as_ref()),
            ];
            for (field, r) in refs {
                let Some(k) = r.and_then(|r| r.secret.as_ref()) else {
                    continue;
                };
                let purpose = format!("Signer {}/{n} spec.credentials.{field}", cx.config_ns);
                let value =
                    read_secret(&cx.client, &cx.config_ns, &purpose, &k.name, &k.key).await?;
                credentials.remember_cluster_secret(k, value);
            }
        }
        ready.push(
            crate::cap::signed_http::signer::check(&signer, &credentials)
                .map_err(|e| anyhow!(e))?,
        );
    }
    crate::cap::signed_http::Signers::new(ready).map_err(|e| anyhow!(e))
}

/// A Profile's secret references, by field.
fn secret_refs(spec: &ProfileSpec) -> Vec<(&'static str, &SecretRef)> {
    let mut refs = Vec::new();
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
    refs
}

/// A Secret's key as text; `purpose` says who wanted it, for errors.
pub async fn read_secret(
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

/// Resolve everything ActionSet `set` (claimed by `cx.identity`) needs and prepare it; its
/// record is the resource itself.
pub async fn prepare(
    coffer: &Coffer,
    cx: &ClusterCtx,
    set: &ActionSetResource,
    stop: Option<tokio::sync::watch::Sender<Option<String>>>,
) -> Result<PreparedAction> {
    let ns = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec = &set.spec;
    // A Policy's tick passes its label and tick on to the restore point, if sealed.
    let (labels, annotations) = super::policies::seal::marks(coffer.manifest_key()?, set)?;
    let input = match &spec.restore_point {
        Some(rp) => Some(
            Api::<RestorePointResource>::namespaced(cx.client.clone(), &ns)
                .get_opt(rp)
                .await
                .with_context(|| format!("reading RestorePoint {ns}/{rp}"))?
                .map(|r| kinds::restore_point(&r))
                .ok_or_else(|| anyhow!("RestorePoint {ns}/{rp} not found"))?,
        ),
        None => None,
    };
    // Where the workload is: a restore may go into another namespace. Restore points,
    // their objects and the ActionSet stay in the ActionSet's.
    let subject_ns = match (&spec.target_namespace, spec.kind()) {
        (None, _) => ns.clone(),
        (Some(t), ActionKind::Restore) => {
            super::application::check_target(&cx.client, &ns, t).await?;
            t.clone()
        }
        (Some(_), _) => bail!("spec.targetNamespace is for restores only"),
    };
    let (sk, wname) = parse_subject(&spec.workload)?;
    let kind_l = sk.kind.to_ascii_lowercase();
    let safe = format!("{kind_l}-{wname}");
    let label = format!("{kind_l}/{wname}");
    let prefix_root = format!("restorepoints/{ns}/{safe}");
    let subject_api = super::application::api(&cx.client, &subject_ns, sk.api_version, sk.kind);
    let read_subject = async || {
        subject_api
            .get_opt(&wname)
            .await
            .with_context(|| format!("reading {} {subject_ns}/{wname}", sk.kind))
    };
    let mut subject = read_subject().await?;
    // The application first, when it is restored elsewhere or is gone.
    if spec.kind() == ActionKind::Restore
        && let Some(rp) = &input
        && rp.spec.application.is_some()
        && (subject.is_none() || subject_ns != ns)
    {
        restore_application(coffer, cx, rp, (&label, &prefix_root), (&ns, &subject_ns)).await?;
        subject = read_subject().await?;
    }
    if subject.is_none() && spec.kind() != ActionKind::Delete {
        bail!("{} {subject_ns}/{wname} not found", sk.kind);
    }
    let meta = subject
        .as_ref()
        .map(|s| s.metadata.clone())
        .unwrap_or_default();
    let info = WorkloadInfo {
        kind: sk.kind.into(),
        namespace: subject_ns.clone(),
        name: wname.clone(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
    };
    let blueprint_name = if !spec.blueprint.is_empty() {
        spec.blueprint.clone()
    } else {
        match resolve_blueprint(&cx.client, &cx.config_ns, &info).await? {
            Resolution::Unprotected => match &input {
                Some(rp) => rp.spec.blueprint.clone(),
                None => bail!(
                    "{} {ns}/{wname} is not protected by a Blueprint: annotate it with coffer.dev/blueprint=<name>, or create a BlueprintBinding in namespace {} that matches it",
                    sk.kind,
                    cx.config_ns
                ),
            },
            r => r.blueprint().unwrap_or_default().to_string(),
        }
    };
    let blueprint = blueprint(coffer, cx, &blueprint_name).await?;
    let profile_name = match &input {
        Some(rp) => rp.spec.profile.clone(),
        None if !spec.profile.is_empty() => spec.profile.clone(),
        None => info
            .annotations
            .get(PROFILE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "default".into()),
    };
    let (profile, credentials) = profile(cx, &profile_name, true).await?;
    let mut secrets = BTreeMap::new();
    for (k, v) in &info.annotations {
        if let Some(logical) = k.strip_prefix(SECRET_ANNOTATION_PREFIX) {
            let (secret, key) = v
                .split_once('/')
                .ok_or_else(|| anyhow!("annotation {k}: write it as <secret>/<key>, not {v:?}"))?;
            let purpose = format!("the plugin's secret {logical:?}");
            let value = read_secret(&cx.client, &subject_ns, &purpose, secret, key).await?;
            secrets.insert(logical.to_string(), value);
        }
    }
    // Then the Blueprint's: from the subject container's environment (Helm charts).
    let container_annotation = info.annotations.get(CONTAINER_ANNOTATION).cloned();
    for (logical, source) in &blueprint.spec.secrets {
        if secrets.contains_key(logical) {
            continue;
        }
        let Some(obj) = &subject else { continue };
        let found = from_env(obj, container_annotation.as_deref(), &source.from_env)
            .with_context(|| {
                format!(
                    "Blueprint {blueprint_name}: secret {logical:?} from the environment of {} {subject_ns}/{wname}",
                    sk.kind
                )
            })?;
        let Some((var, value)) = found else {
            tracing::info!(secret = %logical, tried = ?source.from_env, "no variable set for the secret; the plugin goes without it");
            continue;
        };
        let value = match value {
            EnvSource::Literal(v) => v,
            EnvSource::Secret { name, key } => {
                let purpose = format!("the plugin's secret {logical:?}, via {var}");
                read_secret(&cx.client, &subject_ns, &purpose, &name, &key).await?
            }
        };
        secrets.insert(logical.clone(), value);
    }
    // The identity the plugin's kube calls act as.
    let service_account = blueprint
        .spec
        .service_account
        .clone()
        .unwrap_or_else(|| super::PLUGIN_SERVICE_ACCOUNT.to_string());
    // A backup takes the application's resources along (captured now, stored at commit).
    let application = match (spec.kind(), &subject) {
        (ActionKind::Backup, Some(obj)) => Some(
            super::application::capture(
                &cx.client,
                &subject_ns,
                obj,
                profile.spec.encryption.is_some(),
            )
            .await?,
        ),
        _ => None,
    };
    let workload_params = match (sk.kind, &subject) {
        ("ConfigMap", Some(obj)) => config_map_params(obj)
            .with_context(|| format!("ConfigMap {subject_ns}/{wname} data.params"))?,
        _ => BTreeMap::new(),
    };
    let workload = Workload::new(
        Kind::Workload,
        safe.clone(),
        WorkloadSpec {
            blueprint: blueprint_name,
            env: BTreeMap::new(),
            run_as: None,
            secrets: BTreeMap::new(),
            profile: Some(profile_name.clone()),
            params: workload_params,
            volumes: BTreeMap::new(),
        },
    );
    let params = match &spec.params {
        serde_json::Value::Null => serde_json::Map::new(),
        serde_json::Value::Object(m) => m.clone(),
        other => bail!("spec.params must be an object, found {other}"),
    };
    let record = Arc::new(super::record::ClusterRecord::new(
        Api::namespaced(cx.client.clone(), &ns),
        Api::namespaced(cx.client.clone(), &ns),
        set,
        &cx.identity,
        stop,
    ));
    let movers = super::movers::settings(cx, spec.kind(), &ns, &label, &blueprint).await?;
    let mut exec = PodExec::new(
        cx.client.clone(),
        PodTarget {
            api_version: sk.api_version.into(),
            kind: sk.kind.into(),
            namespace: subject_ns.clone(),
            name: wname.clone(),
            container: container_annotation.or_else(|| {
                (sk.kind == "PostgresCluster")
                    .then(|| crate::cap::exec::PGO_REPO_CONTAINER.to_string())
            }),
        },
        name.clone(),
    );
    if let Some(m) = movers {
        exec = exec.with_movers(m);
    }
    let signers = signers(cx, &blueprint).await?;
    let mut cluster = ClusterSubject {
        action_set: name.clone(),
        workload,
        label,
        subject: ObjectRef {
            api_version: sk.api_version.into(),
            kind: sk.kind.into(),
            namespace: Some(subject_ns.clone()),
            name: wname.clone(),
        },
        prefix_root,
        secrets,
        blueprint,
        profile,
        restore_point: input,
        credentials,
        backends: Backends::default()
            .with::<Arc<dyn ExecBackend>>(Arc::new(exec))
            .with::<Arc<dyn SnapshotBackend>>(Arc::new(CsiSnapshots {
                client: cx.client.clone(),
                namespace: subject_ns.clone(),
            }))
            .with::<Arc<dyn KubeBackend>>(Arc::new(ClusterKube {
                client: super::plugin_client(&cx.config, &subject_ns, &service_account)?,
                default_namespace: subject_ns,
            })),
        record,
        application,
    };
    if let Some(s) = signers {
        cluster.backends = cluster.backends.with(Arc::new(s));
    }
    coffer
        .prepare(ActionRequest {
            action: spec.kind(),
            workload: Some(cluster.label.clone()),
            labels,
            annotations,
            profile: Some(profile_name),
            restore_point: spec.restore_point.clone(),
            params,
            cluster: Some(Arc::new(cluster)),
            ..Default::default()
        })
        .await
}
