//! Which of an action's commands run in a mover (docs/movers.md): when the daemon has a
//! mover image, the Blueprint says its commands can run beside the workload, and the
//! action is a backup; then each output as large as the threshold was in the subject's
//! last restore point.

use super::kinds::{self, RestorePointResource};
use super::run::ClusterCtx;
use crate::cap::exec::MoverSettings;
use crate::model::{ActionKind, Blueprint};
use anyhow::{Context, Result};
use kube::api::{Api, ListParams};

pub async fn settings(
    cx: &ClusterCtx,
    kind: ActionKind,
    ns: &str,
    workload: &str,
    blueprint: &Blueprint,
) -> Result<Option<MoverSettings>> {
    let (Some(config), Some(mover)) = (&cx.movers, &blueprint.spec.mover) else {
        tracing::debug!(
            daemon = cx.movers.is_some(),
            blueprint = blueprint.spec.mover.is_some(),
            "no movers for this action"
        );
        return Ok(None);
    };
    if kind != ActionKind::Backup {
        return Ok(None);
    }
    let mut previous = std::collections::BTreeMap::new();
    if config.threshold > 0 {
        let rps = Api::<RestorePointResource>::namespaced(cx.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing RestorePoints in {ns} (the last backup's sizes)"))?;
        if let Some(last) = rps
            .items
            .iter()
            .map(kinds::restore_point)
            .filter(|rp| rp.spec.workload == workload)
            .max_by(|a, b| a.spec.end_time.cmp(&b.spec.end_time))
        {
            previous = last
                .spec
                .objects
                .iter()
                .map(|o| (o.key.clone(), o.size))
                .collect();
        }
    }
    tracing::info!(
        threshold = config.threshold,
        known = previous.len(),
        "output may go through a mover"
    );
    Ok(Some(MoverSettings {
        image: config.image.clone(),
        binary: config.binary.clone(),
        threshold: config.threshold,
        previous,
        env: mover.env.clone(),
    }))
}
