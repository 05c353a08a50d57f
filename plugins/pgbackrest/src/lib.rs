//! pgbackrest: physical PostgreSQL backups with the user's own pgBackRest.
//!
//! pgBackRest stays the source of truth: its configuration (the Workload's
//! `PGBACKREST_CONFIG`, else pgBackRest's default) says where the repository is and where
//! PostgreSQL lives; the data never passes through coffer. A restore point records which
//! backup set is its own (label, type, the sets it builds on, LSN and WAL range, sizes) in
//! a small record at the location, so a restore, a delete and a verify act on exactly it.
//!
//! backup  = `info`; `stanza-create` when the stanza is missing; `check` (WAL archiving
//!           works) before a stanza's first set; `backup` (pgBackRest's incr by default, a full when there is none),
//!           progress from its own per-file log; the new set read back from `info`.
//! restore = `restore --set=LABEL --archive-mode=off` into a new or empty directory
//!           (`pgPath`, a Workload volume or a directory directly in one), or in place with
//!           `--delta` (`inPlace: true`, the server stopped); to the end of the backup
//!           (`--type=immediate`) unless a point-in-time `target` is given.
//! delete  = `expire --set=LABEL`, refused while later sets build on it; a set pgBackRest
//!           already expired counts as done.
//! verify  = `pgbackrest verify`: this set and the sets it builds on must be valid.

mod info;
mod pgo;
mod target;

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Error, NoParams, location, log,
};
use info::{Set, Stanza, Verified, pgbackrest};
use serde::{Deserialize, Serialize};
use std::io::BufRead;

pub struct Backup;
pub struct Restore;
pub struct Delete;
pub struct Verify;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, Delete, Verify]);

const LOCATION: &str = "default";
const RECORD: &str = "pgbackrest/backup.json";
const ARTIFACT: &str = "pgbackrest-set";

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// The stanza; default: the Workload's PGBACKREST_STANZA, else the only one configured.
    pub stanza: Option<String>,
    /// `full`, `diff` or `incr`; default pgBackRest's: `incr`, a `full` when the stanza has
    /// none yet.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Ask PostgreSQL for an immediate checkpoint instead of waiting for the next one.
    #[serde(default = "yes")]
    pub start_fast: bool,
    /// pgBackRest's parallel processes (`--process-max`); default its own.
    pub process_max: Option<u32>,
    /// PGO mode: how long to wait for PGO's manual backup.
    #[serde(default = "twelve_hours")]
    pub wait_minutes: u64,
}

fn twelve_hours() -> u64 {
    720
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// The data directory to restore into: new or empty, a Workload volume or a directory
    /// directly in one (the parent must be writable by the Workload's user).
    pub pg_path: Option<String>,
    /// Restore over the configured data directory (pg1-path) with `--delta`, instead of
    /// into `pgPath`. PostgreSQL must be stopped.
    #[serde(default)]
    pub in_place: bool,
    /// Replay WAL up to this point in time; default: stop at the end of the backup.
    pub target: Option<target::Target>,
    /// What the server does at the target: `promote` (default: it opens for writes),
    /// `pause` or `shutdown`.
    #[serde(default = "promote")]
    pub target_action: String,
    /// PGO mode: how long to wait for PGO's restore.
    #[serde(default = "twelve_hours")]
    pub wait_minutes: u64,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    /// Expire the set in the repository (`pgbackrest expire --set`). Default: yes for a
    /// Workload; no for a PGO cluster, whose own retention (`repoN-retention-full`) expires
    /// it — the restore point goes, the set stays until then.
    pub expire: Option<bool>,
}

fn promote() -> String {
    "promote".into()
}

/// What a restore point records of its backup set.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub stanza: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub prior: Option<String>,
    pub reference: Vec<String>,
    pub lsn: Option<info::Range>,
    pub wal: info::Range,
    pub started: i64,
    pub stopped: i64,
    pub size: u64,
    pub delta: u64,
    pub repo_size: u64,
    pub repo_delta: u64,
    pub repo: u64,
    pub pg_version: Option<String>,
    pub system_id: Option<u64>,
    /// Made through Crunchy PGO: the cluster and the repo it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgo: Option<pgo::PgoRecord>,
}

impl Record {
    fn of(stanza: &Stanza, set: &Set) -> Record {
        let db = stanza.db.iter().find(|d| d.id == set.database.id);
        Record {
            stanza: stanza.name.clone(),
            label: set.label.clone(),
            kind: set.kind.clone(),
            prior: set.prior.clone(),
            reference: set.reference.clone().unwrap_or_default(),
            lsn: set.lsn.clone(),
            wal: set.archive.clone(),
            started: set.timestamp.start,
            stopped: set.timestamp.stop,
            size: set.info.size,
            delta: set.info.delta,
            repo_size: set.info.repository.size,
            repo_delta: set.info.repository.delta,
            repo: set.database.repo_key,
            pg_version: db.map(|d| d.version.clone()),
            system_id: db.map(|d| d.system_id),
            pgo: None,
        }
    }
}

fn plain(field: &str, v: &str, problems: &mut Vec<String>) {
    let ok = !v.is_empty()
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        problems.push(format!(
            "params.{field}: {v:?}: letters, digits, '-', '_' and '.' only"
        ));
    }
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(s) = &p.stanza {
            plain("stanza", s, &mut problems);
        }
        if pgo::is_pgo(req) && (p.kind.is_some() || p.process_max.is_some()) {
            problems.push("params.type and params.processMax: PGO takes them from the cluster's spec.backups.pgbackrest.manual.options (e.g. [--type=full]), not from coffer".into());
        }
        if let Some(t) = &p.kind
            && !["full", "diff", "incr"].contains(&t.as_str())
        {
            problems.push(format!("params.type: {t:?} is not full, diff or incr"));
        }
        if p.process_max == Some(0) {
            problems.push("params.processMax: at least 1".into());
        }
        sdk::checked(problems)
    }

    fn run(p: BackupParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        if pgo::is_pgo(req) {
            return pgo::backup(req, p.stanza.as_deref(), p.wait_minutes);
        }
        backup(p)
    }
}

fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let mut stanza = info::stanza(p.stanza.as_deref())?;
    let name = stanza.name.clone();
    let created =
        [info::MISSING_STANZA_PATH, info::MISSING_STANZA_DATA].contains(&stanza.status.code);
    if created {
        log::info(
            "creating the stanza",
            &[("stanza", &name), ("status", &stanza.status.message)],
        );
        pgbackrest(Some(&name))
            .arg("stanza-create")
            .run(None, 1 << 20)?;
    }
    // `check` forces a WAL switch and waits for it to be archived, about a second on
    // every backup. pgBackRest's backup already waits for its own stop segment to be
    // archived (archive-check), so `check` only runs before a stanza's first set, where
    // a misconfigured archive_command is most likely and its message is the clearest.
    if created || stanza.backup.is_empty() {
        pgbackrest(Some(&name))
            .arg("check")
            .run(None, 1 << 20)
            .map_err(|e| archiving_error(&name, "check", &e))?;
    }
    let before = stanza.labels();

    let mut cmd = pgbackrest(Some(&name)).arg("--log-level-console=detail");
    if let Some(t) = &p.kind {
        cmd = cmd.arg(format!("--type={t}"));
    }
    if p.start_fast {
        cmd = cmd.arg("--start-fast");
    }
    if let Some(n) = p.process_max {
        cmd = cmd.arg(format!("--process-max={n}"));
    }
    let reported = run_with_progress(cmd.arg("backup")).map_err(|e| {
        // [082] ArchiveTimeoutError: the backup's stop segment never reached the repository.
        let timeout = matches!(&e, Error::Remote(r) if r.code.as_deref() == Some("82"));
        if timeout || sdk::error_text(&e).contains("[082]") {
            archiving_error(&name, "backup", &e)
        } else {
            e
        }
    })?;

    stanza = info::stanza(Some(&name))?;
    let set = reported
        .as_deref()
        .and_then(|l| stanza.set(l))
        .or_else(|| stanza.newest_since(&before))
        .ok_or_else(|| {
            sdk::internal(format!(
                "pgbackrest backup succeeded but info lists no new set in stanza {name}"
            ))
        })?
        .clone();
    store_record(&stanza, &set, None)
}

/// Record `set` of `stanza` as this restore point's, at the location.
fn store_record(
    stanza: &Stanza,
    set: &Set,
    pgo: Option<pgo::PgoRecord>,
) -> Result<ActionOutput, Error> {
    if set.error {
        return Err(sdk::internal(format!(
            "pgBackRest made set {} with page checksum errors (info says error: true); it is not recorded as a restore point",
            set.label
        )));
    }
    let mut record = Record::of(stanza, set);
    record.pgo = pgo;
    let json = serde_json::to_vec_pretty(&record).map_err(|e| sdk::internal(e.to_string()))?;
    let stored = location::open(LOCATION)?.put_bytes(RECORD, &json, &sdk::compressed())?;
    let mut a = sdk::artifact(ARTIFACT, LOCATION, &stored);
    a.metadata = vec![
        ("stanza".into(), record.stanza.clone()),
        ("label".into(), record.label.clone()),
        ("type".into(), record.kind.clone()),
    ];
    log::info(
        "backup set made",
        &[
            ("label", &record.label),
            ("type", &record.kind),
            ("size", &record.size.to_string()),
        ],
    );
    let lsn = |f: fn(&info::Range) -> &Option<String>| {
        record
            .lsn
            .as_ref()
            .and_then(|r| f(r).clone())
            .unwrap_or_default()
    };
    Ok(ActionOutput {
        artifacts: vec![a],
        outputs: vec![
            ("stanza".into(), record.stanza.clone()),
            ("label".into(), record.label.clone()),
            ("type".into(), record.kind.clone()),
            ("prior".into(), record.prior.clone().unwrap_or_default()),
            ("lsnStart".into(), lsn(|r| &r.start)),
            ("lsnStop".into(), lsn(|r| &r.stop)),
            (
                "walStart".into(),
                record.wal.start.clone().unwrap_or_default(),
            ),
            (
                "walStop".into(),
                record.wal.stop.clone().unwrap_or_default(),
            ),
            ("size".into(), record.size.to_string()),
            ("repoSize".into(), record.repo_delta.to_string()),
        ],
    })
}

/// Run a pgBackRest command that logs each file with its share done (`… (16KB, 42.10%) …`)
/// and report that as progress; the label it announces, if any.
fn archiving_error(stanza: &str, command: &str, e: &Error) -> Error {
    sdk::internal(format!(
        "pgbackrest {command} of stanza {stanza} failed: {}. PostgreSQL must be running and archive its WAL into this stanza (archive_mode = on, archive_command = 'pgbackrest --stanza={stanza} archive-push %p', with the same configuration); see docs/pgbackrest.md",
        sdk::error_text(e)
    ))
}

fn run_with_progress(cmd: sdk::Cmd<'_>) -> Result<Option<String>, Error> {
    let proc = cmd.spawn()?;
    let stdout = proc
        .take_stdout()
        .ok_or_else(|| sdk::internal("pgbackrest has no stdout"))?;
    let mut label = None;
    let mut last = 0;
    for line in std::io::BufReader::new(sdk::io::StreamReader(stdout)).lines() {
        let Ok(line) = line else { break };
        if let Some(l) = line.split("new backup label = ").nth(1) {
            label = Some(l.trim().to_string());
        }
        if let Some(pct) = percent(&line) {
            let done = (pct * 100.0) as u64;
            // One report per whole percent: a file per line would flood the trail.
            if done / 100 > last / 100 {
                sdk::log::progress("backup", done, Some(10_000));
                last = done;
            }
        }
    }
    let status = proc.wait()?;
    sdk::check_exit("pgbackrest", &status)?;
    Ok(label)
}

/// The `NN.NN%` of a `backup file …` / `restore file …` line.
fn percent(line: &str) -> Option<f64> {
    if !line.contains(" file ") {
        return None;
    }
    let end = line.find("%)")?;
    let start = line[..end].rfind(' ')? + 1;
    line[start..end].parse().ok()
}

/// The record of the restore point being restored, deleted or verified.
fn record(req: &ActionRequest) -> Result<Record, Error> {
    sdk::json_artifact(req, ARTIFACT, LOCATION)?
        .ok_or_else(|| sdk::invalid("the restore point has no pgbackrest-set artifact"))
}

/// The recorded set as pgBackRest has it now: still there, and of the same cluster.
fn current<'a>(stanza: &'a Stanza, r: &Record) -> Result<Option<&'a Set>, Error> {
    let Some(set) = stanza.set(&r.label) else {
        return Ok(None);
    };
    let now = stanza.system_id(set.database.id);
    if let (Some(was), Some(now)) = (r.system_id, now)
        && was != now
    {
        return Err(sdk::invalid(format!(
            "stanza {} now holds another PostgreSQL cluster (system id {now}, the restore point's was {was}); its set {} is not this restore point's",
            r.stanza, r.label
        )));
    }
    Ok(Some(set))
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(t) = &p.target
            && let Err(e) = t.options()
        {
            problems.push(e);
        }
        if pgo::is_pgo(req) {
            if p.pg_path.is_some() || p.in_place {
                problems.push("params.pgPath and params.inPlace: PGO restores in place, into the cluster's own volumes; leave them out".into());
            }
            if p.target_action != "promote" {
                problems.push("params.targetAction: PGO always promotes at the target".into());
            }
            return sdk::checked(problems);
        }
        match (&p.pg_path, p.in_place) {
            (Some(_), true) => problems
                .push("params.pgPath and params.inPlace: one or the other, not both".into()),
            (None, false) => problems.push(
                "params.pgPath: where to restore (a new or empty directory in a Workload volume); or inPlace: true to restore over the stopped server's own data directory"
                    .into(),
            ),
            (Some(path), false) if !path.starts_with('/') || path.contains("/../") => problems
                .push(format!("params.pgPath: {path:?} must be an absolute path")),
            _ => {}
        }
        if !["promote", "pause", "shutdown"].contains(&p.target_action.as_str()) {
            problems.push(format!(
                "params.targetAction: {:?} is not promote, pause or shutdown",
                p.target_action
            ));
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        if pgo::is_pgo(req) {
            return pgo::restore(req, &record(req)?, &p);
        }
        restore(p, req)
    }
}

fn restore(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let r = record(req)?;
    let stanza = info::stanza(Some(&r.stanza))?;
    if current(&stanza, &r)?.is_none() {
        return Err(sdk::invalid(format!(
            "backup set {} is no longer in stanza {}: pgBackRest expired it (its retention, repo1-retention-full) or someone deleted it",
            r.label, r.stanza
        )));
    }
    let mut cmd = pgbackrest(Some(&r.stanza)).arg(format!("--set={}", r.label));
    match &p.pg_path {
        Some(path) => cmd = cmd.arg(format!("--pg1-path={path}")),
        None => cmd = cmd.arg("--delta"),
    }
    let stops_at = match &p.target {
        None => {
            cmd = cmd.arg("--type=immediate");
            "the end of the backup".to_string()
        }
        Some(t) => {
            let (kind, value) = t.options().map_err(sdk::invalid)?;
            before_backup_end(t, &r)?;
            cmd = cmd
                .arg(format!("--type={kind}"))
                .arg(format!("--target={value}"));
            if t.exclusive {
                cmd = cmd.arg("--target-exclusive");
            }
            format!("{kind} {value}")
        }
    };
    cmd = cmd
        .arg(format!("--target-action={}", p.target_action))
        .arg("--archive-mode=off")
        .arg("restore");
    cmd.run(None, 1 << 20).map_err(|e| {
        let text = sdk::error_text(&e);
        if text.contains("because it contains files") {
            sdk::invalid(format!(
                "params.pgPath: {} is not empty; a restore goes into a new or empty directory (or inPlace: true over the stopped server's own)",
                p.pg_path.as_deref().unwrap_or_default()
            ))
        } else if text.contains("while PostgreSQL is running") {
            sdk::invalid(format!(
                "PostgreSQL is running on the data directory: stop it before an in-place restore, or restore beside it with pgPath ({text})"
            ))
        } else {
            e
        }
    })?;
    log::info(
        "backup set restored",
        &[("label", &r.label), ("stopsAt", &stops_at)],
    );
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![
            ("label".into(), r.label.clone()),
            (
                "pgPath".into(),
                p.pg_path.clone().unwrap_or_else(|| "(pg1-path)".into()),
            ),
            ("stopsAt".into(), stops_at),
        ],
    })
}

/// A target before the backup ended cannot be reached from it: say which restore point to
/// use instead of letting PostgreSQL fail at startup.
fn before_backup_end(t: &target::Target, r: &Record) -> Result<(), Error> {
    if let Some(at) = t.epoch()
        && at < r.stopped
    {
        return Err(sdk::invalid(format!(
            "params.target.time is before backup set {} finished ({} seconds after 1970, target {at}): restore an earlier restore point",
            r.label, r.stopped
        )));
    }
    if let (Some(want), Some(stop)) = (
        t.lsn.as_deref(),
        r.lsn.as_ref().and_then(|l| l.stop.as_deref()),
    ) && let (Ok(want), Ok(stop_n)) = (target::lsn(want), target::lsn(stop))
        && want < stop_n
    {
        return Err(sdk::invalid(format!(
            "params.target.lsn is before backup set {} ended at {stop}: restore an earlier restore point",
            r.label
        )));
    }
    Ok(())
}

impl Action for Delete {
    const NAME: &'static str = "delete";
    type Params = DeleteParams;

    fn run(p: DeleteParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        let r = record(req)?;
        if !p.expire.unwrap_or(!pgo::is_pgo(req)) {
            log::info(
                "backup set kept in the repository (params.expire is off); its retention expires it",
                &[("label", &r.label), ("stanza", &r.stanza)],
            );
            let mut out = sdk::delete_input_artifacts(req, LOCATION)?;
            out.outputs.push(("kept".into(), r.label.clone()));
            return Ok(out);
        }
        let stanza = info::stanza(Some(&r.stanza))?;
        if current(&stanza, &r)?.is_none() {
            log::info(
                "backup set already expired",
                &[("label", &r.label), ("stanza", &r.stanza)],
            );
        } else {
            let dependents = stanza.dependents(&r.label);
            if !dependents.is_empty() {
                return Err(sdk::invalid(format!(
                    "backup set {} is the base of {} (they cannot be restored without it): delete their restore points first",
                    r.label,
                    dependents.join(", ")
                )));
            }
            pgbackrest(Some(&r.stanza))
                .arg(format!("--set={}", r.label))
                .arg("expire")
                .run(None, 1 << 20)
                .map_err(|e| {
                    let text = sdk::error_text(&e);
                    if text.contains("cannot be expired until another full backup") {
                        sdk::invalid(format!(
                            "pgBackRest keeps at least one full backup: {} is the only full in stanza {}; take another full backup first ({text})",
                            r.label, r.stanza
                        ))
                    } else {
                        e
                    }
                })?;
            if info::stanza(Some(&r.stanza))?.set(&r.label).is_some() {
                return Err(sdk::internal(format!(
                    "pgbackrest expire --set={} ended without error but info still lists the set",
                    r.label
                )));
            }
            log::info("backup set expired", &[("label", &r.label)]);
        }
        sdk::delete_input_artifacts(req, LOCATION)
    }
}

impl Action for Verify {
    const NAME: &'static str = "verify";
    type Params = NoParams;

    fn run(_: NoParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        let r = record(req)?;
        let stanza = info::stanza(Some(&r.stanza))?;
        if current(&stanza, &r)?.is_none() {
            return Err(sdk::invalid(format!(
                "backup set {} is no longer in stanza {}",
                r.label, r.stanza
            )));
        }
        // pgBackRest 2.45 verifies the whole repository; this set and the sets it builds
        // on are what the restore point needs.
        let out = pgbackrest(Some(&r.stanza))
            .args(["--output=text", "--verbose", "verify"])
            .run(None, 16 << 20)?;
        let text = String::from_utf8_lossy(&out);
        let needed: Vec<&str> = std::iter::once(r.label.as_str())
            .chain(r.reference.iter().map(String::as_str))
            .collect();
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        for v in info::parse_verify(&text) {
            match v {
                Verified::Backup { label, valid, line } if needed.contains(&label.as_str()) => {
                    if !valid {
                        problems.push(line);
                    }
                    seen.push(label);
                }
                Verified::Wal { clean: false, line } => problems.push(line),
                _ => {}
            }
        }
        for n in &needed {
            if !seen.iter().any(|s| s == n) {
                problems.push(format!(
                    "backup {n}: not verified (pgBackRest did not list it)"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(sdk::internal(format!(
                "pgbackrest verify: {}",
                problems.join("; ")
            )));
        }
        log::info("backup set verified", &[("label", &r.label)]);
        Ok(ActionOutput {
            artifacts: vec![],
            outputs: vec![
                ("label".into(), r.label.clone()),
                ("verified".into(), needed.join(",")),
            ],
        })
    }
}
