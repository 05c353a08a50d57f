//! fsfreeze: application-consistent volume backups for any application on a filesystem.
//!
//! backup  = inside one quiesce window: for each filesystem of `freeze`, a guard
//!           `fsfreeze -u PATH` is registered, then `fsfreeze -f PATH` (writes block; the
//!           filesystem is flushed, its journal clean); one cut of `volumes`
//!           (`snapshot.create-group`, which returns once the copy is cut); every guard
//!           fired (thawed, last frozen first) and the window ended at once. Then each
//!           snapshot is exported as a tar into the location and deleted (`export: true`,
//!           the default), or kept and recorded (`export: false`, e.g. CSI
//!           VolumeSnapshots on Kubernetes).
//! restore = an exported volume is unpacked into the new directory `volumes: {NAME: PATH}`
//!           names; a kept snapshot is restored into the new volume it names (a new claim
//!           on Kubernetes).
//! delete  = remove the restore point's objects, and its kept snapshots.
//!
//! A frozen filesystem is never left frozen: the guards run on any end of the action, and
//! the next coffer (or daemon leader) runs them when the process running it died. Never
//! freeze the filesystem that holds the snapshots or coffer's own state: the cut would
//! wait for the thaw until `spec.limits.quiesce` ends it.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Cmd, Error, log, snapshot,
};
use serde::Deserialize;

pub struct Backup;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, sdk::volume::RestoreVolumes, sdk::volume::DeleteVolumes]);

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// Mount points to freeze for the cut, in the workload (absolute paths).
    pub freeze: Vec<String>,
    /// The volumes to cut at that instant: the Workload's `spec.volumes` names locally, the
    /// subject's PersistentVolumeClaims on Kubernetes.
    pub volumes: Vec<String>,
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
        if p.freeze.is_empty() {
            problems.push("params.freeze: name at least one mount point to freeze".into());
        }
        for f in &p.freeze {
            if !f.starts_with('/') || f.split('/').any(|c| c == "..") {
                problems.push(format!(
                    "params.freeze: {f:?} is not an absolute path of a mount point"
                ));
            }
        }
        if p.volumes.is_empty() {
            problems.push("params.volumes: name at least one volume to cut".into());
        }
        sdk::checked(problems)
    }

    fn run(p: BackupParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        backup(p)
    }
}

/// Freeze, cut, thaw: the quiesce window. The cuts and the window's length.
fn cut_frozen(p: &BackupParams) -> Result<(Vec<snapshot::SnapshotInfo>, u64), Error> {
    let volumes = sdk::volume::refs(&p.volumes);
    let window = sdk::quiesce::Window::begin()?;
    let mut thaws = Vec::new();
    for path in &p.freeze {
        // The guard first: recorded before the filesystem is frozen.
        thaws.push(Cmd::new(["fsfreeze", "-u", path.as_str()]).guard(&format!("thaw {path}"))?);
        Cmd::new(["fsfreeze", "-f", path.as_str()]).run(None, 0)?;
    }
    let cut = snapshot::create_group(&volumes, p.snapshot_class.as_deref(), &[]);
    // Thawed at once, cut or not (an error here still leaves the host to retry at the end).
    let mut thawed = Ok(());
    for t in thaws.iter().rev() {
        if let Err(e) = t.fire() {
            thawed = Err(e);
        }
    }
    let ms = window.end()?;
    thawed?;
    Ok((cut?, ms))
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let (cuts, window_ms) = cut_frozen(&p)?;
    log::info(
        "cut and thawed",
        &[
            ("windowMs", &window_ms.to_string()),
            ("volumes", &p.volumes.join(",")),
        ],
    );
    sdk::volume::finish_cuts(&cuts, window_ms, p.export, &p.volumes)
}
