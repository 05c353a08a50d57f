//! volumes: volume snapshots of a workload with Kasten K10's hook actions around the cut.
//!
//! backup  = inside one quiesce window: each `backupPosthook` command registered as a guard,
//!           the `backupPrehook` commands run in order (quiesce the application), one cut
//!           of `volumes` (`snapshot.create-group`, which returns once the copy is cut),
//!           the posthooks run in order at once — before the snapshots are ready — and the
//!           window ended. Then each snapshot is exported as a tar into the location and
//!           deleted (`export: true`, the default), or kept and recorded (`export: false`,
//!           e.g. CSI VolumeSnapshots on Kubernetes).
//! restore = an exported volume is unpacked into the new directory `volumes: {NAME: PATH}`
//!           names; a kept snapshot is restored into the new volume it names (a new claim
//!           on Kubernetes).
//! delete  = remove the restore point's objects, and its kept snapshots.
//!
//! Without hooks it is K10's plain volume backup (crash-consistent). A posthook runs
//! however the backup ends, even when the runner dies (see `sdk::hooks`).

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::hooks::{self, Hook};
use coffer_plugin_sdk::{self as sdk, Action, ActionOutput, ActionRequest, Error, log};
use serde::Deserialize;

pub struct Backup;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, sdk::volume::RestoreVolumes, sdk::volume::DeleteVolumes]);

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// The volumes to cut at one instant: the Workload's `spec.volumes` names locally, the
    /// subject's PersistentVolumeClaims on Kubernetes.
    pub volumes: Vec<String>,
    /// Commands run in order before the cut, to quiesce the application (K10's
    /// backupPrehook). Each must be granted like any exec.
    #[serde(default)]
    pub backup_prehook: Vec<Hook>,
    /// Commands run in order right after the cut, before the snapshots are ready — and
    /// however the backup ends, even if a prehook or the cut failed (K10's backupPosthook).
    #[serde(default)]
    pub backup_posthook: Vec<Hook>,
    /// Export each snapshot as a tar into the location, then delete it (default); `false`
    /// keeps the snapshots and records their names.
    #[serde(default = "yes")]
    pub export: bool,
    /// The VolumeSnapshotClass (Kubernetes).
    pub snapshot_class: Option<String>,
}

fn yes() -> bool {
    true
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if p.volumes.is_empty() {
            problems.push("params.volumes: name at least one volume to cut".into());
        }
        problems.extend(hooks::check("backupPrehook", &p.backup_prehook));
        problems.extend(hooks::check("backupPosthook", &p.backup_posthook));
        sdk::checked(problems)
    }

    fn run(p: BackupParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        backup(p)
    }
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let volumes = sdk::volume::refs(&p.volumes);
    let (cuts, window_ms) = hooks::cut_between(
        &p.backup_prehook,
        &p.backup_posthook,
        &volumes,
        p.snapshot_class.as_deref(),
    )?;
    log::info(
        "cut, and the posthooks ran",
        &[
            ("windowMs", &window_ms.to_string()),
            ("volumes", &p.volumes.join(",")),
        ],
    );
    sdk::volume::finish_cuts(&cuts, window_ms, p.export, &p.volumes)
}
