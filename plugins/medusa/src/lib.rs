//! medusa: backups of a Cassandra node with the user's own cassandra-medusa (local mode: a
//! VM or bare-metal node, medusa beside it), or of a K8ssandra datacenter through the
//! k8ssandra operator's Medusa API (Kubernetes mode, [`operator`]).
//!
//! Medusa stays the source of truth: its configuration (the Workload's
//! `MEDUSA_CONFIG_FILE`, which the host hands medusa as `--config-file`) says where the
//! storage is and how to stop and start the node; the data never passes through coffer. A
//! restore point records which medusa backup is its own in a small record at the location.
//!
//! backup  = `medusa backup --backup-name=coffer-… --mode=…` (differential by default:
//!           only SSTables the storage does not hold yet are uploaded, and every backup is
//!           complete on its own); then `status` must show the node finished. A backup that
//!           fails is deleted again and never recorded.
//! restore = the backup must exist and be complete; then a full backup of the node as it
//!           is (the *safety* backup); then `restore-node --in-place` (medusa
//!           downloads into the action's scratch directory, stops the node, swaps the data
//!           in, starts it). If the restore fails, the safety backup is restored the same
//!           way, so the node runs on its data from before; the safety backup is deleted
//!           once it is not needed, and named in the error when it is.
//! delete  = `delete-backup --current-node` (a backup medusa no longer has counts as
//!           deleted); `purge: true` then runs `medusa purge` (the configuration's
//!           retention).
//! verify  = `status` (complete) and `medusa verify` (every file present, sizes match).

mod cli;
mod operator;

use cli::{Node, medusa, run};
use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Error, NoParams, Scratch, location, log,
};
use serde::{Deserialize, Serialize};

pub struct Backup;
pub struct Restore;
pub struct Delete;
pub struct Verify;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, Delete, Verify]);

pub(crate) const LOCATION: &str = "default";
const RECORD: &str = "medusa/backup.json";
const ARTIFACT: &str = "medusa-backup";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// `differential` (default, medusa's own: only SSTables the storage does not hold yet
    /// are uploaded; each backup still restores on its own) or `full` (everything again).
    #[serde(default = "differential")]
    pub mode: String,
    /// Also compare MD5 checksums, not only sizes, when deciding what is already stored.
    /// (Local mode; the k8ssandra operator decides for itself.)
    #[serde(default)]
    pub md5: bool,
    /// Kubernetes mode, a K8ssandraCluster subject: the datacenter to back up (needed when
    /// it has more than one).
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Kubernetes mode: how long to wait for the operator's MedusaBackupJob and
    /// MedusaBackup before failing (and deleting them), in minutes.
    #[serde(default = "ten_hours")]
    pub wait_minutes: f64,
}

fn ten_hours() -> f64 {
    600.0
}

fn differential() -> String {
    "differential".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// Back up the node as it is before restoring over it, and restore that if the restore
    /// fails (default: yes). Off, a restore that fails after medusa stopped the node can
    /// leave it without its data.
    #[serde(default = "yes")]
    pub safety_backup: bool,
    /// Kubernetes mode, a K8ssandraCluster subject: the datacenter to restore (needed when
    /// it has more than one).
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Kubernetes mode: how long to wait for each MedusaBackupJob and MedusaRestoreJob, in
    /// minutes.
    #[serde(default = "ten_hours")]
    pub wait_minutes: f64,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    /// Then run `medusa purge`: delete the backups the configuration's retention
    /// (`max_backup_age`, `max_backup_count`) no longer keeps, and files no backup uses.
    #[serde(default)]
    pub purge: bool,
}

/// What a restore point records of its medusa backup.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub name: String,
    pub mode: String,
    pub nodes: Vec<Node>,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    pub size: u64,
    pub files: u64,
    /// Made through the k8ssandra operator (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<operator::OperatorRecord>,
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !["full", "differential"].contains(&p.mode.as_str()) {
            problems.push(format!(
                "params.mode: {:?} is not full or differential",
                p.mode
            ));
        }
        problems.extend(check_wait(p.wait_minutes));
        sdk::checked(problems)
    }

    fn run(p: BackupParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        if operator::applies(req) {
            return operator::backup(req, &p);
        }
        let name = cli::new_name("");
        log::info("medusa backup", &[("name", &name), ("mode", &p.mode)]);
        let mut cmd = medusa("backup", &name).arg(format!("--mode={}", p.mode));
        if p.md5 {
            cmd = cmd.arg("--enable-md5-checks");
        }
        let made = run(cmd, "backup").and_then(|_| complete(&name));
        let status = match made {
            Ok(s) => s,
            Err(e) => {
                // Whatever medusa stored of it goes: a backup that failed is not one.
                let cleanup = match cli::delete(&name) {
                    Ok(true) => format!("; its partial backup {name} was deleted"),
                    Ok(false) => String::new(),
                    Err(d) => format!(
                        "; deleting its partial backup {name} failed too ({}): `medusa delete-backup --backup-name={name}` removes it",
                        sdk::error_text(&d)
                    ),
                };
                return Err(with_context(
                    e,
                    &format!(
                        "{cleanup}. Is the node up (medusa snapshots it through nodetool) and its storage reachable?"
                    ),
                ));
            }
        };
        let record = Record {
            name: status.name.clone(),
            mode: status.backup_type.clone().unwrap_or(p.mode),
            nodes: status.nodes.clone(),
            started: status.started,
            finished: status.finished,
            size: status.size,
            files: status.num_objects,
            operator: None,
        };
        if !status.missing_nodes_list.is_empty() {
            log::info(
                "this backup holds this node only; each other node of the cluster needs its own Workload and backup",
                &[("others", &status.missing_nodes_list.join(","))],
            );
        }
        store(record)
    }
}

/// The backup's status, which must show every node that started it finished.
fn complete(name: &str) -> Result<cli::Status, Error> {
    let status = cli::status(name)?.ok_or_else(|| {
        sdk::internal(format!(
            "medusa backup ended without error but medusa status has no backup {name}"
        ))
    })?;
    match status.unusable() {
        Some(why) => Err(sdk::internal(why)),
        None => Ok(status),
    }
}

fn with_context(e: Error, more: &str) -> Error {
    let text = sdk::error_text(&e);
    match e {
        Error::Denied(_) => e,
        Error::InvalidArgument(_) => sdk::invalid(format!("{text}{more}")),
        _ => sdk::internal(format!("{text}{more}")),
    }
}

fn check_wait(minutes: f64) -> Option<String> {
    (!(minutes > 0.0 && minutes.is_finite()))
        .then(|| format!("params.waitMinutes: {minutes} is not a positive number of minutes"))
}

pub(crate) fn store(record: Record) -> Result<ActionOutput, Error> {
    let json = serde_json::to_vec_pretty(&record).map_err(|e| sdk::internal(e.to_string()))?;
    let stored = location::open(LOCATION)?.put_bytes(RECORD, &json, &sdk::compressed())?;
    let mut a = sdk::artifact(ARTIFACT, LOCATION, &stored);
    let nodes: Vec<&str> = record.nodes.iter().map(|n| n.fqdn.as_str()).collect();
    a.metadata = vec![
        ("backup".into(), record.name.clone()),
        ("mode".into(), record.mode.clone()),
        ("nodes".into(), nodes.join(",")),
    ];
    log::info(
        "medusa backup made",
        &[
            ("name", &record.name),
            ("mode", &record.mode),
            ("files", &record.files.to_string()),
            ("size", &record.size.to_string()),
        ],
    );
    let version = record
        .nodes
        .iter()
        .find_map(|n| n.release_version.clone())
        .unwrap_or_default();
    Ok(ActionOutput {
        artifacts: vec![a],
        outputs: vec![
            ("backup".into(), record.name.clone()),
            ("mode".into(), record.mode.clone()),
            ("nodes".into(), nodes.join(",")),
            ("files".into(), record.files.to_string()),
            ("size".into(), record.size.to_string()),
            ("cassandraVersion".into(), version),
        ],
    })
}

/// The restore point's record.
fn record(req: &ActionRequest) -> Result<Record, Error> {
    sdk::json_artifact(req, ARTIFACT, LOCATION)?
        .ok_or_else(|| sdk::invalid("the restore point has no medusa-backup artifact"))
}

/// The backup must still be in medusa's storage, complete.
fn usable(r: &Record) -> Result<cli::Status, Error> {
    let status = cli::status(&r.name)?.ok_or_else(|| {
        sdk::invalid(format!(
            "medusa backup {} is not in the storage the Workload's medusa.ini names (deleted, purged by its retention, or another configuration); `medusa list-backups` shows what is there",
            r.name
        ))
    })?;
    if let Some(why) = status.unusable() {
        return Err(sdk::invalid(why));
    }
    Ok(status)
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        check_wait(p.wait_minutes).map_or(Ok(()), |e| Err(vec![e]))
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        let r = record(req)?;
        if operator::applies(req) {
            return operator::restore(req, &r, &p);
        }
        if r.operator.is_some() {
            return Err(sdk::invalid(format!(
                "medusa backup {} was made through the k8ssandra operator: restore it with its CassandraDatacenter or K8ssandraCluster as the subject",
                r.name
            )));
        }
        usable(&r).map_err(|e| with_context(e, ". The node was not touched."))?;
        let scratch = Scratch::new()?;

        let safety = if p.safety_backup {
            let name = cli::new_name("before-restore-");
            log::info(
                "backing up the node as it is, to restore it if this restore fails",
                &[("safetyBackup", &name)],
            );
            // Full, in its own folder of the storage: a differential would share the
            // storage's SSTable objects by file name, and after an in-place restore or a
            // TRUNCATE, Cassandra's sequential SSTable names repeat with other contents, so
            // it would overwrite objects older backups still need (cassandra-medusa#523).
            let made = run(
                medusa("backup", &name).arg("--mode=full"),
                "backup (safety)",
            )
            .and_then(|_| complete(&name));
            if let Err(e) = made {
                let _ = cli::delete(&name);
                return Err(with_context(
                    e,
                    ". The node's current data could not be backed up first, so nothing was restored and the node was not touched (params.safetyBackup: false restores without it).",
                ));
            }
            Some(name)
        } else {
            None
        };

        log::info(
            "medusa restore-node --in-place (medusa stops the node, swaps its data, starts it)",
            &[("backup", &r.name)],
        );
        let cmd = medusa("restore-node", &r.name)
            .arg("--in-place")
            .arg(format!("--temp-dir={}", scratch.dir()));
        if let Err(e) = run(cmd, "restore-node") {
            return Err(roll_back(e, safety.as_deref(), &scratch));
        }
        if let Some(s) = &safety
            && let Err(e) = cli::delete(s)
        {
            log::warn(
                "the restore is done; its safety backup could not be deleted",
                &[("safetyBackup", s), ("error", &sdk::error_text(&e))],
            );
        }
        log::info("node restored", &[("backup", &r.name)]);
        let nodes: Vec<&str> = r.nodes.iter().map(|n| n.fqdn.as_str()).collect();
        Ok(ActionOutput {
            artifacts: vec![],
            outputs: vec![
                ("backup".into(), r.name.clone()),
                ("nodes".into(), nodes.join(",")),
            ],
        })
    }
}

/// The restore failed: put the node's own data back from the safety backup (which also
/// restarts a node medusa left stopped). Medusa stops the node only once the download is
/// done, so a failure before that left the node untouched; restoring the safety backup then
/// changes nothing, and it is the only way to be sure either way.
fn roll_back(failed: Error, safety: Option<&str>, scratch: &Scratch) -> Error {
    let why = sdk::error_text(&failed);
    let Some(safety) = safety else {
        return sdk::internal(format!(
            "{why}. No safety backup was made (params.safetyBackup: false): if medusa had stopped the node, check its data before starting it"
        ));
    };
    log::warn(
        "the restore failed; restoring the node's data from before it",
        &[("safetyBackup", safety), ("error", &why)],
    );
    let back = run(
        medusa("restore-node", safety)
            .arg("--in-place")
            .arg(format!("--temp-dir={}", scratch.dir())),
        "restore-node (rollback)",
    );
    match back {
        Ok(_) => {
            let kept = match cli::delete(safety) {
                Ok(_) => String::new(),
                Err(_) => format!(" (its safety backup {safety} is still in medusa's storage)"),
            };
            sdk::internal(format!(
                "{why}. The node was put back on its data from before the restore and is running{kept}"
            ))
        }
        Err(e) => sdk::internal(format!(
            "{why}. Restoring the node's data from before the restore failed too ({}): it is in medusa backup {safety}; `medusa restore-node --in-place --backup-name={safety}` puts it back",
            sdk::error_text(&e)
        )),
    }
}

impl Action for Delete {
    const NAME: &'static str = "delete";
    type Params = DeleteParams;

    fn run(p: DeleteParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        let r = record(req)?;
        if operator::applies(req) || r.operator.is_some() {
            return operator::delete(req, &r, p.purge);
        }
        if cli::delete(&r.name)? {
            log::info("medusa backup deleted", &[("backup", &r.name)]);
        } else {
            log::info(
                "medusa backup already gone from the storage",
                &[("backup", &r.name)],
            );
        }
        if p.purge {
            run(sdk::Cmd::new(["medusa", "purge"]), "purge")?;
            log::info("medusa purge done", &[]);
        }
        let mut out = sdk::delete_input_artifacts(req, LOCATION)?;
        out.outputs.push(("backup".into(), r.name.clone()));
        Ok(out)
    }
}

impl Action for Verify {
    const NAME: &'static str = "verify";
    type Params = NoParams;

    fn run(_: NoParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        let r = record(req)?;
        if operator::applies(req) || r.operator.is_some() {
            return operator::verify(req, &r);
        }
        let status = usable(&r)?;
        run(medusa("verify", &r.name), "verify")?;
        log::info("medusa backup verified", &[("backup", &r.name)]);
        Ok(ActionOutput {
            artifacts: vec![],
            outputs: vec![
                ("backup".into(), r.name.clone()),
                ("files".into(), status.num_objects.to_string()),
                ("size".into(), status.size.to_string()),
            ],
        })
    }
}
