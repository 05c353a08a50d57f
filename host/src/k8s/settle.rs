//! Settling an ActionSet left Running by a runner that is gone (killed daemon, lost node):
//! the leader marks it Completed when its RestorePoint resource exists (the backup had
//! committed), else Failed with its partial objects and task pod removed.

use super::run::{ClusterCtx, patch_status};
use super::sync::sync;
use super::{api, spec_of};
use crate::action::{Coffer, cleanup};
use crate::model::{ActionKind, ActionSetSpec, ActionSetStatus, Kind, now_rfc3339};
use crate::storage::Location;
use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::json;

/// Settle an ActionSet left Running by an instance that is gone.
pub async fn settle_stale(coffer: &Coffer, cx: &ClusterCtx, set: &DynamicObject) -> Result<()> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let sets = api(&cx.client, "ActionSet", &ns);
    let spec: ActionSetSpec = spec_of(set)?;
    let status: ActionSetStatus = super::status_of(set);
    let runner = status.runner.clone().unwrap_or_else(|| "unknown".into());
    if spec.kind() == ActionKind::Backup {
        // Committed but not marked: the RestorePoint resource is the proof.
        let rps = api(&cx.client, "RestorePoint", &ns)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing RestorePoints in {ns}"))?;
        if let Some(rp) = rps
            .items
            .iter()
            .find(|r| r.data.pointer("/spec/actionSet").and_then(|v| v.as_str()) == Some(&name))
        {
            let rp_name = rp.metadata.name.clone().unwrap_or_default();
            tracing::info!(actionset = %name, restorepoint = %rp_name, "the backup had committed before its runner stopped");
            return patch_status(
                &sets,
                &name,
                json!({"phase": "Completed", "endTime": now_rfc3339(), "restorePoint": rp_name, "runner": null}),
            )
            .await;
        }
    }
    // Its task pod, if it had one, goes too.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(cx.client.clone(), &ns);
    let selector = format!(
        "{}={}",
        crate::cap::exec::TASK_LABEL,
        crate::cap::exec::task_label_value(&name)
    );
    if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
        for p in list.items {
            let _ = pods
                .delete(&p.metadata.name.unwrap_or_default(), &Default::default())
                .await;
        }
    }
    let mut why = format!(
        "the coffer daemon running it ({runner}) stopped before it finished; nothing was recorded as a restore point"
    );
    let mut pending = false;
    if spec.kind().removes_objects_on_failure()
        && let Some(prefix) = &status.prefix
    {
        let profile = status.profile.clone().unwrap_or_else(|| {
            if spec.profile.is_empty() {
                "default".into()
            } else {
                spec.profile.clone()
            }
        });
        let location = async {
            // The status is on the tenant's resource: only this namespace's own restore
            // points are ever removed.
            if !prefix.starts_with(&format!("restorepoints/{ns}/")) {
                bail!("prefix {prefix:?} is not one of namespace {ns}'s restore points");
            }
            if !sync(coffer, &cx.client, &cx.config_ns, Kind::Profile, &profile).await? {
                bail!("Profile {profile} not found in namespace {}", cx.config_ns);
            }
            let (p, _) = coffer.profile(&profile)?;
            Location::from_profile(&p, &coffer.credentials)
        }
        .await;
        let c = cleanup::remove_partial_backup(location, prefix).await;
        pending = c.pending();
        why.push_str(&c.note(
            prefix,
            &format!("remove them with `coffer location rm -r --profile {profile} {prefix}`"),
        ));
    }
    tracing::warn!(actionset = %format!("{ns}/{name}"), "{why}");
    patch_status(
        &sets,
        &name,
        json!({"phase": "Failed", "endTime": now_rfc3339(), "error": why, "runner": null,
               "cleanupPending": pending}),
    )
    .await
}
