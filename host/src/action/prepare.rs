//! Turning "back up workload W" into everything an action needs, and its ActionSet.

use super::record::{ActionRecord, CatalogRecord};
use super::{Coffer, owner};
use crate::cap::exec::{ExecBackend, LocalExec};
use crate::cap::location::{BoundLocation, BoundLocations};
use crate::cap::secrets::SecretValues;
use crate::cap::snapshot::SnapshotBackend;
use crate::cap::snapshot::btrfs::BtrfsSnapshots;
use crate::cap::{ActionScope, Actor, Backends, Grants, Lending};
use crate::limits::EffectiveLimits;
use crate::model::{
    ActionKind, ActionSet, ActionSetSpec, ActionSetStatus, Blueprint, Kind, Phase, Profile,
    RestorePoint, Workload, WorkloadSpec, now_rfc3339,
};
use crate::plugin::PluginBytes;
use crate::storage::{Location, Prefix};
use crate::wit::abi::types::ObjectRef;
use crate::wit::wit_plugin;
use anyhow::{Context, Result, anyhow, bail};
use coffer_manifest::Manifest;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct ActionRequest {
    pub action: ActionKind,
    /// The workload (for delete: taken from the restore point).
    pub workload: Option<String>,
    pub profile: Option<String>,
    /// Input restore point (restore, delete).
    pub restore_point: Option<String>,
    /// Param overrides, on top of the Blueprint's and the Workload's.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Run this plugin instead of the Blueprint's (`coffer plugin run`).
    pub plugin_override: Option<crate::model::PluginRef>,
    /// Grant what the plugin declares instead of what the Blueprint grants (development).
    pub grant_declared: bool,
    /// Restore a restore point of another workload into this one (local mode; refused
    /// unless asked for, since it overwrites this workload with another's data).
    pub allow_other_workload: bool,
    /// On Kubernetes: the subject and its backends, resolved by the caller (`k8s::run`).
    pub cluster: Option<Arc<ClusterSubject>>,
    /// The ActionSet's name (local mode; default: made from the action, workload and
    /// time). A policy's tick names its ActionSets, so a tick never runs twice.
    pub name: Option<String>,
    /// Labels of the ActionSet, and of the restore point a backup makes
    /// (`coffer.dev/policy`).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the restore point a backup makes (`coffer.dev/tick`).
    pub annotations: BTreeMap<String, String>,
    /// A backup that builds on the workload's newest restore point (`--incremental`; the
    /// plugin's backup must say `incremental` in its manifest).
    pub incremental: bool,
    /// A Policy's schedule of fulls: incremental (where the plugin can) unless the newest
    /// restore point's chain already holds this many backups.
    pub full_every: Option<u32>,
    /// A stream's link: incremental on the newest restore point whenever there is one.
    pub stream: bool,
}

/// An action's subject on a cluster, resolved before `prepare`: the Workload stands for the
/// real object (its spec carries the bound Blueprint and the Profile).
pub struct ClusterSubject {
    /// The ActionSet resource this action records to.
    pub action_set: String,
    /// `name` is a DNS-safe form of the subject (`statefulset-pg`); restore points are
    /// named after it.
    pub workload: Workload,
    /// What users call it: `statefulset/pg`.
    pub label: String,
    pub subject: ObjectRef,
    /// Objects go under `<prefix_root>/<restore point>`.
    pub prefix_root: String,
    pub secrets: BTreeMap<String, String>,
    /// The cluster's backends: pod exec, the plugin's kube client, CSI snapshots.
    pub backends: Backends,
    /// What the action works with, read from the cluster.
    pub blueprint: Blueprint,
    pub profile: Profile,
    pub restore_point: Option<RestorePoint>,
    /// The Secret values the Profile's credentials name.
    pub credentials: crate::credentials::Credentials,
    /// Where the action is recorded: its ActionSet and RestorePoint resources.
    pub record: Arc<dyn ActionRecord>,
    /// A backup's application resources, captured as it starts.
    pub application: Option<CapturedApplication>,
}

/// On Kubernetes: the application's resources, captured when a backup starts and stored
/// with its restore point (one object, through the same pipeline as the data) when it
/// commits.
#[derive(Clone, Debug)]
pub struct CapturedApplication {
    /// The resources, as one JSON list.
    pub document: Vec<u8>,
    /// `Kind/name` of each, in creation order.
    pub resources: Vec<String>,
    /// What was left out, and why.
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for ClusterSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSubject({})", self.label)
    }
}

/// An action ready to run, with its ActionSet already recorded as Running.
pub struct PreparedAction {
    /// The ActionSet's name.
    pub name: String,
    pub request: ActionRequest,
    pub workload: Workload,
    /// How records name the workload (`shop-db`; on Kubernetes `statefulset/pg`).
    pub workload_label: String,
    pub blueprint: Blueprint,
    pub profile: Profile,
    pub plugin: PluginBytes,
    pub manifest: Manifest,
    pub location: Location,
    /// Where this action's objects live.
    pub prefix: String,
    pub input: Option<RestorePoint>,
    /// For a backup: the name its restore point will get.
    pub restore_point_name: Option<String>,
    pub params: serde_json::Value,
    pub started_at: String,
    /// What the plugin is lent; its scope holds the action's records.
    pub lending: Lending,
    /// The action's location (the one bound as `default`).
    pub bound: Arc<BoundLocation>,
    pub wit_request: wit_plugin::ActionRequest,
    /// This run's owner token: every status write compare-and-sets on it.
    pub owner_token: String,
    /// Where the action's record is kept (the catalog, or the cluster's resources).
    pub record: Arc<dyn ActionRecord>,
    /// A backup's manifest is written: from then on its objects are never removed.
    pub manifest_written: std::sync::atomic::AtomicBool,
    /// A backup's application resources (on Kubernetes), stored when it commits.
    pub application: Option<CapturedApplication>,
    /// The restore points this action reads besides its own, bound read-only, nearest
    /// first: an incremental backup's base and that one's bases; an incremental restore
    /// point's bases.
    pub chain: Vec<super::chain::ChainLink>,
}

impl PreparedAction {
    pub fn scope(&self) -> &ActionScope {
        &self.lending.scope
    }

    /// Copy what the capability calls recorded onto an ActionSet status.
    pub fn copy_records(&self, s: &mut ActionSetStatus) {
        super::scope_record::copy_scope(self.scope(), s)
    }
}

fn suffix() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

fn stamp() -> String {
    let f = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}

/// Shallow merge of param objects, later wins.
pub(crate) fn merge_params(
    layers: &[Option<&serde_json::Value>],
    action: &str,
) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (i, layer) in layers.iter().enumerate() {
        match layer {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => out.extend(m.clone()),
            Some(other) => {
                let whose = ["the Blueprint's", "the Workload's", "the command line's"][i.min(2)];
                bail!("{whose} params for action {action} must be an object, found {other}")
            }
        }
    }
    Ok(serde_json::Value::Object(out))
}

impl Coffer {
    /// The restore point `rp` as its authenticated manifest records it, after checking that
    /// the record points where a restore point of its workload must live.
    ///
    /// On a cluster, `expected` is the workload's label and the prefix its restore points
    /// live under.
    pub async fn authenticate(
        &self,
        rp: RestorePoint,
        loc: &Location,
        expected: Option<(&str, &str)>,
        action: &str,
    ) -> Result<RestorePoint> {
        let root = match expected {
            Some((label, prefix_root)) => {
                if rp.spec.workload != label {
                    bail!(
                        "RestorePoint {} belongs to {}, not to {label}; a restore point is restored to (and deleted for) its own workload",
                        rp.name(),
                        rp.spec.workload,
                    );
                }
                prefix_root.to_string()
            }
            None => {
                if !crate::model::names::is_subdomain(&rp.spec.workload) {
                    bail!(
                        "RestorePoint {}: workload {:?} is not a valid name",
                        rp.name(),
                        rp.spec.workload
                    );
                }
                format!("restorepoints/{}", rp.spec.workload)
            }
        };
        let prefix = crate::storage::manifest::expected_prefix(&root, &rp)?;
        let manifest_key = format!("{prefix}/{}", crate::storage::MANIFEST_NAME);
        if rp.spec.prefix != prefix || rp.spec.manifest_key != manifest_key {
            bail!(
                "RestorePoint {} says its objects are under {:?}, but a restore point of {} lives under {prefix}; a RestorePoint cannot point elsewhere, refusing",
                rp.name(),
                rp.spec.prefix,
                rp.spec.workload
            );
        }
        match crate::storage::manifest::read(loc, self.manifest_key()?, &prefix).await? {
            Some(m) => {
                crate::storage::manifest::check_matches(&rp, &m)?;
                Ok(m)
            }
            // An incomplete restore point can still be deleted: only its own prefix is
            // touched.
            None if action == ActionKind::Delete.name() => Ok(rp),
            None => bail!(
                "RestorePoint {}: its manifest {manifest_key} is missing from Profile {}; the backup is incomplete or was removed",
                rp.name(),
                rp.spec.profile
            ),
        }
    }

    pub async fn prepare(&self, req: ActionRequest) -> Result<PreparedAction> {
        let kind = req.action.clone();
        let action = kind.name().to_string();
        let cluster = req.cluster.clone();
        // On a cluster, what the action needs was read from it by the caller.
        let input = match &cluster {
            Some(c) => c.restore_point.clone(),
            None => req
                .restore_point
                .as_deref()
                .map(|n| self.restore_point(n))
                .transpose()?,
        };
        if kind.needs_restore_point() && input.is_none() {
            bail!(
                "{action} needs a restore point: give it with --from RESTOREPOINT (`coffer get restorepoints` lists them)"
            );
        }
        let workload = match (&req.workload, &input) {
            _ if cluster.is_some() => cluster.as_ref().unwrap().workload.clone(),
            (Some(w), _) => self.workload(w)?,
            (None, Some(rp)) => match self
                .catalog
                .get::<Workload>(Kind::Workload, &rp.spec.workload)?
            {
                Some(w) => w,
                // The workload is gone; deleting its backups must still work.
                None => Workload::new(
                    Kind::Workload,
                    rp.spec.workload.clone(),
                    WorkloadSpec {
                        blueprint: rp.spec.blueprint.clone(),
                        env: BTreeMap::new(),
                        run_as: None,
                        secrets: BTreeMap::new(),
                        profile: Some(rp.spec.profile.clone()),
                        params: BTreeMap::new(),
                        volumes: BTreeMap::new(),
                    },
                ),
            },
            (None, None) => bail!("{action} needs a workload"),
        };
        let wname = workload.name().to_string();
        let blueprint = match &cluster {
            Some(c) => c.blueprint.clone(),
            None => {
                self.blueprint(&workload.spec.blueprint)
                    .with_context(|| format!("Workload {wname}: spec.blueprint"))?
                    .0
            }
        };
        let bname = blueprint.name().to_string();
        let profile_name = match &input {
            Some(rp) => rp.spec.profile.clone(),
            None => req
                .profile
                .clone()
                .or_else(|| workload.spec.profile.clone())
                .unwrap_or_else(|| super::resources::DEFAULT_PROFILE.into()),
        };
        let (profile, credentials) = match &cluster {
            Some(c) => (c.profile.clone(), c.credentials.clone()),
            None => (self.profile(&profile_name)?.0, self.credentials.clone()),
        };
        let location = Location::from_profile(&profile, &credentials)?;
        // What a restore or delete acts on is what coffer's signed manifest says, at the
        // place derived from the workload and name, never what the record claims.
        let input = match input {
            None => None,
            Some(rp) => Some(
                self.authenticate(
                    rp,
                    &location,
                    cluster
                        .as_deref()
                        .map(|c| (c.label.as_str(), c.prefix_root.as_str())),
                    &action,
                )
                .await?,
            ),
        };

        let plugin = match &req.plugin_override {
            Some(p) => PluginBytes::resolve(p, &bname)?,
            None => PluginBytes::resolve(&blueprint.spec.plugin, &bname)?,
        };
        let manifest = crate::plugin::inspect(&plugin)?.manifest;
        if manifest.action(&action).is_none() {
            bail!(
                "Blueprint {bname}: plugin {} has no action {action:?} (it has: {})",
                manifest.name,
                manifest
                    .actions
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(allowed) = &blueprint.spec.actions
            && !allowed.contains(&action)
        {
            bail!(
                "Blueprint {bname} does not allow action {action:?} (spec.actions: {})",
                allowed.join(", ")
            );
        }
        if let Some(rp) = &input
            && rp.spec.plugin.name != manifest.name
        {
            bail!(
                "RestorePoint {} was made by plugin {}, but Workload {wname} is protected by plugin {} (Blueprint {bname})",
                rp.name(),
                rp.spec.plugin.name,
                manifest.name
            );
        }
        if let Some(rp) = &input
            && cluster.is_none()
            && rp.spec.workload != wname
        {
            if !req.allow_other_workload {
                bail!(
                    "RestorePoint {} is a backup of workload {}, not of {wname}; restoring it into {wname} replaces {wname}'s data with {}'s. Pass --allow-other-workload to do that on purpose",
                    rp.name(),
                    rp.spec.workload,
                    rp.spec.workload
                );
            }
            tracing::warn!(
                restorepoint = %rp.name(),
                from = %rp.spec.workload,
                into = %wname,
                "restoring another workload's restore point (--allow-other-workload)"
            );
        }
        let chain = self
            .chain_for(&req, &input, &manifest, &wname, &profile_name, &location)
            .await?;
        let limits = EffectiveLimits::resolve(&blueprint.spec.limits, &action)
            .map_err(|e| anyhow!("Blueprint {bname}: {e}"))?;
        // Checked again here, not only at apply: built-in Blueprints, Blueprints read from a
        // cluster, and what --grant-declared grants never went through `coffer apply`.
        let grants = if req.grant_declared {
            &manifest.capabilities
        } else {
            &blueprint.spec.grants
        };
        crate::cap::exec::policy::check_grants(grants)
            .map_err(|e| anyhow!("Blueprint {bname}: spec.grants.{e}"))?;
        if !req.grant_declared {
            crate::cap::signed_http::check_grants(grants)
                .map_err(|e| anyhow!("Blueprint {bname}: spec.grants.{e}"))?;
            crate::cap::net::check_grants(grants)
                .map_err(|e| anyhow!("Blueprint {bname}: spec.grants.{e}"))?;
        }
        let overrides = serde_json::Value::Object(req.params.clone());
        let params = merge_params(
            &[
                blueprint.spec.params.get(&action),
                workload.spec.params.get(&action),
                Some(&overrides),
            ],
            &action,
        )?;
        let secrets = match &cluster {
            Some(c) => SecretValues::from_values(&c.label, &c.secrets),
            None => SecretValues::resolve(
                &format!("Workload {wname}"),
                &workload.spec.secrets,
                &credentials,
            )
            .map_err(|e| anyhow!(e))?,
        };

        let (stamp, sfx) = (stamp(), suffix());
        let name = match (&cluster, &req.name) {
            (Some(c), _) => c.action_set.clone(),
            (None, Some(n)) => {
                if self
                    .catalog
                    .get::<serde_json::Value>(Kind::ActionSet, n)?
                    .is_some()
                {
                    bail!("ActionSet {n} exists already: this run has happened");
                }
                n.clone()
            }
            (None, None) => format!("{action}-{wname}-{stamp}-{sfx}"),
        };
        let workload_label = cluster
            .as_ref()
            .map_or_else(|| wname.clone(), |c| c.label.clone());
        let access = kind.location_access(input.is_some());
        let (prefix, expected, restore_point_name) = match &input {
            None => {
                let rp = format!("{wname}-{stamp}-{sfx}");
                let prefix = match &cluster {
                    Some(c) => format!("{}/{rp}", c.prefix_root),
                    None => format!("restorepoints/{wname}/{rp}"),
                };
                (
                    prefix,
                    BTreeMap::new(),
                    kind.makes_restore_point().then_some(rp),
                )
            }
            Some(rp) => {
                let expected = rp
                    .spec
                    .objects
                    .iter()
                    .map(|o| (o.key.clone(), o.clone()))
                    .collect();
                (rp.spec.prefix.clone(), expected, None)
            }
        };
        let bound = Arc::new(BoundLocation::new(
            Prefix {
                profile: profile_name.clone(),
                store: location.store.clone(),
                root: prefix.clone(),
                encryption: location.encryption.clone(),
                parts: location.parts.clone(),
            },
            access,
            location.zstd_level,
            expected,
        ));
        let mode = match &cluster {
            Some(c) => c.backends.clone(),
            None => Backends::default()
                .with::<Arc<dyn ExecBackend>>(Arc::new(local_exec(
                    &workload,
                    &profile,
                    &credentials,
                )?))
                .with::<Arc<dyn SnapshotBackend>>(Arc::new(BtrfsSnapshots {
                    workload: wname.clone(),
                    volumes: workload.spec.volumes.clone(),
                    // A restore may create only the directories the user named.
                    targets: params
                        .get("volumes")
                        .and_then(|v| v.as_object())
                        .into_iter()
                        .flat_map(|m| m.values())
                        .filter_map(|v| v.as_str())
                        .map(std::path::PathBuf::from)
                        .collect(),
                })),
        };
        let granted = Grants {
            declared: manifest.capabilities.clone(),
            granted: grants.clone(),
            plugin: manifest.name.clone(),
            blueprint: bname.clone(),
        };
        // Local mode reads the Signers the Blueprint grants (and their keys) now, so a
        // missing one stops the action before the plugin runs.
        let mode = match &cluster {
            None => match crate::cap::signed_http::ready(
                &granted,
                |n| self.catalog.get(Kind::Signer, n),
                &credentials,
            )? {
                Some(s) => mode.with(Arc::new(s)),
                None => mode,
            },
            Some(_) => mode,
        };
        let lending = Lending::new(
            Actor {
                action: action.clone(),
                blueprint: bname.clone(),
                plugin: manifest.name.clone(),
                workload: wname.clone(),
            },
            limits,
            granted,
            secrets,
            BoundLocations(
                std::iter::once(("default".to_string(), bound.clone()))
                    .chain(chain.iter().map(|l| (l.location.clone(), l.bound.clone())))
                    .collect(),
            ),
            mode,
        );
        // A restore (or delete) gets its restore point's artifacts; an incremental backup
        // gets its base's, at the base's location.
        let (given, at_base) = match (&input, chain.first()) {
            (Some(rp), _) => (Some(rp), false),
            (None, Some(base)) => (Some(&base.restore_point), true),
            (None, None) => (None, false),
        };
        let input_artifacts = given
            .iter()
            .flat_map(|rp| rp.spec.artifacts.iter())
            .map(|a| wit_plugin::Artifact {
                name: a.name.clone(),
                location: if at_base {
                    super::chain::location_name(1)
                } else {
                    a.location.clone()
                },
                key: a.key.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
                metadata: a
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect();
        let wit_request = wit_plugin::ActionRequest {
            action: action.clone(),
            params: params.to_string(),
            subject: match &cluster {
                Some(c) => c.subject.clone(),
                None => ObjectRef {
                    api_version: crate::model::API_VERSION.into(),
                    kind: "Workload".into(),
                    namespace: None,
                    name: wname.clone(),
                },
            },
            locations: std::iter::once("default".to_string())
                .chain(chain.iter().map(|l| l.location.clone()))
                .collect(),
            input_artifacts,
            checkpoint: None,
        };

        let started_at = now_rfc3339();
        let mut set = ActionSet::new(
            Kind::ActionSet,
            name.clone(),
            ActionSetSpec {
                action: action.clone(),
                workload: workload_label.clone(),
                blueprint: bname,
                profile: profile_name,
                restore_point: input.as_ref().map(|rp| rp.name().to_string()),
                params: params.clone(),
                cancel: false,
                deadline: None,
                target_namespace: None,
            },
        );
        set.metadata.creation_timestamp = Some(started_at.clone());
        set.metadata.labels = req.labels.clone();
        let owner = owner::current();
        let owner_token = owner.token.clone();
        set.status = ActionSetStatus {
            phase: Phase::Running,
            start_time: Some(started_at.clone()),
            owner: Some(owner),
            prefix: Some(prefix.clone()),
            ..Default::default()
        };
        if cluster.is_some() {
            // A cluster ActionSet's spec may leave both to bindings and defaults.
            set.status.blueprint = Some(set.spec.blueprint.clone());
            set.status.profile = Some(set.spec.profile.clone());
        }
        let record: Arc<dyn ActionRecord> = match &cluster {
            Some(c) => c.record.clone(),
            None => Arc::new(CatalogRecord {
                catalog: self.catalog.clone(),
                name: name.clone(),
                owner_token: owner_token.clone(),
            }),
        };
        record.started(&set).await?;
        super::scope_record::set_persist_hook(&lending.scope, &record);
        if let Some(c) = &cluster {
            let ns = c.subject.namespace.clone().unwrap_or_default();
            super::scope_record::seal_guards(&lending.scope, self.manifest_key()?, ns, c);
        }
        tracing::info!(actionset = %name, action = %action, workload = %wname, "action started");
        Ok(PreparedAction {
            name,
            request: req,
            workload,
            workload_label,
            blueprint,
            profile,
            plugin,
            manifest,
            location,
            prefix,
            input,
            restore_point_name,
            params,
            started_at,
            lending,
            bound,
            wit_request,
            owner_token,
            record,
            manifest_written: Default::default(),
            application: match (&kind, &cluster) {
                (ActionKind::Backup, Some(c)) => c.application.clone(),
                _ => None,
            },
            chain,
        })
    }
}

/// The processes of a local Workload, with pgBackRest's repo1 on its Profile when it asks
/// for that (`PGBACKREST_REPO1_TYPE: profile`).
fn local_exec(
    w: &crate::model::Workload,
    profile: &crate::model::Profile,
    credentials: &crate::credentials::Credentials,
) -> Result<LocalExec> {
    use crate::cap::exec::profile_repo;
    let exec = LocalExec::for_workload(w).map_err(|e| anyhow!("Workload {}: {e}", w.name()))?;
    if !profile_repo::wanted(w) {
        return Ok(exec);
    }
    let repo = profile_repo::locate(w, profile).map_err(|e| anyhow!(e))?;
    let keys = profile_repo::keys(profile, credentials).map_err(|e| anyhow!(e))?;
    exec.with_profile_repo(repo, keys)
        .map_err(|e| anyhow!("Workload {}: {e}", w.name()))
}
