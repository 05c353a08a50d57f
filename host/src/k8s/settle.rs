//! Settling an ActionSet left Running by a runner that is gone (killed daemon, lost node):
//! the leader marks it Completed when its RestorePoint resource exists (the backup had
//! committed), else Failed with its partial objects and task pod removed.

use super::kinds::{ActionSetResource, RestorePointResource, StatusPatch, patch_status, status};
use super::run::ClusterCtx;
use crate::action::cleanup;
use crate::model::{ActionKind, Phase, now_rfc3339};
use crate::storage::Location;
use anyhow::{Context, Result, bail};
use kube::api::{Api, ListParams};

/// Settle an ActionSet left Running by an instance that is gone. Conditional on the
/// version read: a runner that wrote since keeps its action.
pub async fn settle_stale(
    cx: &ClusterCtx,
    key: &crate::storage::manifest::ManifestKey,
    set: &ActionSetResource,
) -> Result<()> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let version = set.metadata.resource_version.as_deref();
    let sets: Api<ActionSetResource> = Api::namespaced(cx.client.clone(), &ns);
    let spec = &set.spec;
    let st = status(set);
    let runner = st.runner.clone().unwrap_or_else(|| "unknown".into());
    if spec.kind() == ActionKind::Backup {
        // Committed but not marked: the RestorePoint resource is the proof.
        let rps = Api::<RestorePointResource>::namespaced(cx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing RestorePoints in {ns}"))?;
        if let Some(rp) = rps.items.iter().find(|r| r.spec.action_set == name) {
            let rp_name = rp.metadata.name.clone().unwrap_or_default();
            tracing::info!(actionset = %name, restorepoint = %rp_name, "the backup had committed before its runner stopped");
            let patch = StatusPatch {
                phase: Some(Phase::Completed),
                end_time: Some(now_rfc3339()),
                restore_point: Some(rp_name),
                runner: Some(None),
                ..Default::default()
            };
            patch_status(&sets, &name, &patch, version).await?;
            return Ok(());
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
    // What the lost run quiesced runs again first.
    let (guards, guard_note) = super::orphan_guards::fire(cx, key, set).await;
    why.push_str(&guard_note);
    let mut pending = false;
    if spec.kind().removes_objects_on_failure()
        && let Some(prefix) = &st.prefix
    {
        let profile = st.profile.clone().unwrap_or_else(|| {
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
            let (p, credentials) = super::resolve::profile(cx, &profile, false).await?;
            Location::from_profile(&p, &credentials)
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
    let mut patch = StatusPatch::failed(why);
    patch.cleanup_pending = Some(pending);
    if !guard_note.is_empty() {
        patch.guards = Some(guards);
    }
    patch_status(&sets, &name, &patch, version).await?;
    Ok(())
}
