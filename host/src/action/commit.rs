//! Ending an action well: a backup is committed by writing its manifest object last, then
//! recorded as a RestorePoint; a delete removes the manifest first, then the rest.

use super::CapturedApplication;
use super::{Coffer, PreparedAction};
use crate::model::ActionKind;
use crate::model::{
    ApplicationRecord, ArtifactRecord, Kind, ObjectRecord, Phase, PluginInfo, RestorePoint,
    RestorePointSpec, now_rfc3339,
};
use crate::redact::clip;
use crate::storage::MANIFEST_NAME;
use crate::storage::keys::APPLICATION_NAME;
use crate::storage::pipeline::{self, Sink};
use crate::wit::wit_plugin::ActionOutput;
use anyhow::{Context, Result, bail};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;

/// What a plugin's result may hold, at most: outputs (and metadata entries per artifact),
/// bytes per value, artifacts.
const MAX_OUTPUTS: usize = 64;
const MAX_VALUE: usize = 4 << 10;
const MAX_ARTIFACTS: usize = 1000;

/// The output a plugin gives, with no artifacts, when its incremental backup found nothing
/// new since the base.
pub const UNCHANGED: &str = "unchanged";
/// The output the host adds then: the restore point that still is the current state.
pub const UNCHANGED_SINCE: &str = "unchangedSince";

fn unchanged(p: &PreparedAction, output: &ActionOutput) -> bool {
    !p.chain.is_empty()
        && output.artifacts.is_empty()
        && output
            .outputs
            .iter()
            .any(|(k, v)| k == UNCHANGED && v == "true")
}

impl Coffer {
    pub(super) async fn complete(&self, p: &PreparedAction, output: ActionOutput) -> Result<()> {
        let outputs: BTreeMap<String, String> = output
            .outputs
            .iter()
            .take(MAX_OUTPUTS)
            .map(|(k, v)| {
                (
                    clip(k, 128).to_string(),
                    p.scope().redactor.redact(clip(v, MAX_VALUE)),
                )
            })
            .collect();
        let finish = |a: &mut crate::model::ActionSet| {
            a.status.phase = Phase::Completed;
            a.status.end_time = Some(now_rfc3339());
            a.status.owner = None;
            a.status.outputs = outputs.clone();
            p.copy_records(&mut a.status);
        };
        match &p.request.action {
            ActionKind::Backup if unchanged(p, &output) => {
                // An incremental with nothing new since its base: the base already is the
                // state now, so no restore point is made (a stream's quiet links).
                let base = p.chain[0].restore_point.name().to_string();
                p.location.remove_prefix(&p.prefix).await?;
                p.record
                    .update(&|a: &mut crate::model::ActionSet| {
                        finish(a);
                        a.status
                            .outputs
                            .insert(UNCHANGED_SINCE.into(), base.clone());
                    })
                    .await?;
                tracing::info!(base = %base, "nothing changed since the base: no restore point");
            }
            ActionKind::Backup => {
                // A base deleted while this ran (by hand, or by retention) would leave a
                // restore point nothing can restore.
                if let Some(base) = p.chain.first()
                    && self
                        .catalog
                        .get::<crate::model::RestorePoint>(
                            Kind::RestorePoint,
                            base.restore_point.name(),
                        )?
                        .is_none()
                {
                    bail!(
                        "its base {} was deleted while it ran; back up again (a new incremental builds on the newest restore point left)",
                        base.restore_point.name()
                    );
                }
                let rp = self.commit_backup(p, &output).await?;
                let mut a = p.record.current().await?;
                finish(&mut a);
                a.status.artifacts = rp.spec.artifacts.clone();
                a.status.restore_point = Some(rp.name().to_string());
                // The RestorePoint and the Completed ActionSet together, or neither (then
                // the backup fails, its objects kept: the manifest is written).
                p.record.commit_backup(&rp, &a).await?;
                tracing::info!(restorepoint = %rp.name(), bytes = rp.spec.size, stored = rp.spec.stored_size, "backup committed");
            }
            ActionKind::Delete => {
                self.remove_restore_point(p).await?;
                p.record.update(&finish).await?;
            }
            ActionKind::Restore | ActionKind::Other(_) => {
                p.record.update(&finish).await?;
            }
        }
        tracing::info!("action completed");
        Ok(())
    }

    /// The manifest object is the RestorePoint resource itself, as JSON: self-describing, so
    /// the location alone says what a backup holds and that it is complete.
    async fn commit_backup(
        &self,
        p: &PreparedAction,
        output: &ActionOutput,
    ) -> Result<RestorePoint> {
        // The last write of a key wins; the host's records are the authority on objects.
        let mut objects: Vec<ObjectRecord> = Vec::new();
        for o in p.scope().records.lock().unwrap().objects.iter() {
            objects.retain(|x| x.key != o.key);
            objects.push(o.clone());
        }
        if output.artifacts.len() > MAX_ARTIFACTS {
            bail!(
                "plugin {} reported {} artifacts; at most {MAX_ARTIFACTS} are recorded",
                p.manifest.name,
                output.artifacts.len()
            );
        }
        if output.artifacts.is_empty() {
            bail!(
                "plugin {} finished its backup without reporting any artifact; nothing would be restorable",
                p.manifest.name
            );
        }
        let mut artifacts = Vec::new();
        for a in &output.artifacts {
            let Some(obj) = objects.iter().find(|o| o.key == a.key) else {
                bail!(
                    "plugin {} reported artifact {:?} at key {:?}, which it did not write in this backup",
                    p.manifest.name,
                    a.name,
                    a.key
                );
            };
            if let Some(sha) = &a.sha256
                && sha != &obj.sha256
            {
                bail!(
                    "plugin {} reported sha256 {sha} for {:?}, but the host stored {}",
                    p.manifest.name,
                    a.key,
                    obj.sha256
                );
            }
            // What the plugin says is kept, so it is clipped and redacted like its logs: a
            // plugin may not put a secret into the manifest.
            let red = |s: &str, max: usize| p.scope().redactor.redact(clip(s, max));
            artifacts.push(ArtifactRecord {
                name: red(&a.name, 256),
                location: a.location.clone(),
                key: a.key.clone(),
                size: obj.size,
                sha256: Some(obj.sha256.clone()),
                metadata: a
                    .metadata
                    .iter()
                    .take(MAX_OUTPUTS)
                    .map(|(k, v)| (red(k, 128), red(v, MAX_VALUE)))
                    .collect(),
            });
        }
        // The application's resources (Kubernetes), stored like the data, before the
        // manifest that lists them.
        let application = match &p.application {
            Some(app) => {
                let rec = self.store_application(p, app).await?;
                objects.retain(|x| x.key != rec.key);
                let record = ApplicationRecord {
                    key: rec.key.clone(),
                    resources: app.resources.clone(),
                    skipped: app.skipped.clone(),
                };
                objects.push(rec);
                Some(record)
            }
            None => None,
        };
        let name = p
            .restore_point_name
            .clone()
            .expect("a backup has a restore point name");
        let mut rp = RestorePoint::new(
            Kind::RestorePoint,
            name.clone(),
            RestorePointSpec {
                workload: p.workload_label.clone(),
                blueprint: p.blueprint.name().to_string(),
                profile: p.profile.name().to_string(),
                plugin: PluginInfo {
                    name: p.manifest.name.clone(),
                    version: p.manifest.version.clone(),
                    sha256: p.plugin.sha256.clone(),
                },
                prefix: p.prefix.clone(),
                manifest_key: format!("{}/{MANIFEST_NAME}", p.prefix),
                action_set: p.name.clone(),
                start_time: p.started_at.clone(),
                end_time: now_rfc3339(),
                size: objects.iter().map(|o| o.size).sum(),
                stored_size: objects.iter().map(|o| o.stored_size).sum(),
                artifacts,
                objects,
                params: match &p.params {
                    serde_json::Value::Object(m) => m.clone().into_iter().collect(),
                    _ => BTreeMap::new(),
                },
                application,
                quiesce: p.scope().quiesce.window(),
                base: p.chain.first().map(|l| l.restore_point.name().to_string()),
            },
        );
        rp.metadata.creation_timestamp = Some(rp.spec.end_time.clone());
        rp.metadata.labels.extend(p.request.labels.clone());
        rp.metadata
            .annotations
            .extend(p.request.annotations.clone());
        rp.metadata.labels.insert(
            "coffer.dev/workload".into(),
            rp.spec.workload.replace('/', "."),
        );
        // A Policy's restore point is sealed, so retention can tell it from one a tenant
        // labelled alike (see crate::policy::SEAL_ANNOTATION).
        if let (Some(policy), Some(tick)) = (
            rp.metadata.labels.get(crate::policy::POLICY_LABEL),
            rp.metadata.annotations.get(crate::policy::TICK_ANNOTATION),
        ) {
            let seal = self.manifest_key()?.tag(
                crate::policy::RESTORE_POINT_SEAL,
                &[&rp.spec.prefix, rp.name(), policy, tick],
            );
            rp.metadata
                .annotations
                .insert(crate::policy::SEAL_ANNOTATION.into(), seal);
        }
        // Retention goes on every object before the manifest commits the backup, and on
        // the manifest right after; a failure fails the backup.
        let keys: Vec<String> = rp
            .spec
            .objects
            .iter()
            .map(|o| format!("{}/{}", rp.spec.prefix, o.stored_key))
            .collect();
        p.location.lock(&keys).await?;
        let body = self.manifest_key()?.seal(&rp)?;
        // Committing is this process's to do only while the action is still its own (a
        // coffer elsewhere may have settled it as lost).
        if !p.record.owned().await? {
            return Err(crate::catalog::NotOurs(p.name.clone()).into());
        }
        p.location
            .store
            .put(
                &Path::from(rp.spec.manifest_key.as_str()),
                PutPayload::from(body),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "writing the manifest {}: {}",
                    rp.spec.manifest_key,
                    crate::storage::store_error(&e)
                )
            })?;
        p.manifest_written
            .store(true, std::sync::atomic::Ordering::SeqCst);
        p.location
            .lock(std::slice::from_ref(&rp.spec.manifest_key))
            .await?;
        Ok(rp)
    }

    /// Upload the captured application document under the restore point's prefix.
    async fn store_application(
        &self,
        p: &PreparedAction,
        app: &CapturedApplication,
    ) -> Result<ObjectRecord> {
        let src: wasmtime_wasi::p2::DynInputStream = Box::new(
            wasmtime_wasi::p2::pipe::MemoryInputPipe::new(app.document.clone()),
        );
        let counters = pipeline::Counters {
            transfer: Default::default(),
            action: p.scope().progress.bytes.clone(),
        };
        pipeline::upload(
            src,
            &p.bound.prefix,
            APPLICATION_NAME,
            Some(3),
            &counters,
            &Default::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("storing the application's resources: {e}"))
    }

    /// Manifest first (from then on the restore point is no longer complete), then every
    /// object under its prefix, then the record.
    async fn remove_restore_point(&self, p: &PreparedAction) -> Result<()> {
        let rp = p.input.as_ref().expect("delete has a restore point");
        match p
            .location
            .store
            .delete(&Path::from(rp.spec.manifest_key.as_str()))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {}", rp.spec.manifest_key)),
        }
        p.location.remove_prefix(&rp.spec.prefix).await?;
        p.record.remove_restore_point(rp).await?;
        Ok(())
    }

    /// Check a restore point's manifest and every object's stored size and sha256, writing
    /// nothing. (Decompression is checked again as the restore streams.)
    pub(super) async fn verify_input(&self, p: &PreparedAction) -> Result<(), String> {
        // The manifest was read and authenticated when the action was prepared; check it
        // is still there.
        let rp = p.input.as_ref().expect("restore has a restore point");
        self.verify_one(p, rp, &p.bound).await?;
        // An incremental one needs each of its bases whole too.
        for link in &p.chain {
            self.verify_one(p, &link.restore_point, &link.bound)
                .await
                .map_err(|e| {
                    format!(
                        "RestorePoint {} builds on {}: {e}",
                        rp.name(),
                        link.restore_point.name()
                    )
                })?;
        }
        Ok(())
    }

    async fn verify_one(
        &self,
        p: &PreparedAction,
        rp: &crate::model::RestorePoint,
        bound: &crate::cap::location::BoundLocation,
    ) -> Result<(), String> {
        match p.location.exists(&rp.spec.manifest_key).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "RestorePoint {}: its manifest {} is missing from Profile {}; the backup is incomplete or was removed",
                    rp.name(),
                    rp.spec.manifest_key,
                    rp.spec.profile
                ));
            }
            Err(e) => return Err(format!("{e:#}")),
        }
        for o in &rp.spec.objects {
            let path = Path::parse(format!("{}/{}", rp.spec.prefix, o.stored_key))
                .map_err(|e| e.to_string())?;
            let read = std::sync::Mutex::new(None);
            pipeline::download(
                p.location.store.as_ref(),
                &path,
                o,
                Sink::ChecksumOnly,
                None,
                None,
                pipeline::Pin::Record(&read),
            )
            .await
            .map_err(|e| {
                format!(
                    "RestorePoint {} failed verification, nothing was restored: {e}",
                    rp.name()
                )
            })?;
            // The plugin's reads get exactly what was verified.
            if let Some(v) = read.into_inner().unwrap() {
                bound
                    .verified
                    .lock()
                    .unwrap()
                    .insert(o.stored_key.clone(), v);
            }
            if o.encryption.is_some() {
                pipeline::check_identity(
                    p.location.store.as_ref(),
                    &path,
                    o,
                    p.location.encryption.as_ref(),
                )
                .await
                .map_err(|e| format!("RestorePoint {}: nothing was restored: {e}", rp.name()))?;
            }
        }
        Ok(())
    }
}
