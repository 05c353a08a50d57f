//! rds: Amazon RDS DB instances and Aurora clusters, through API calls the host signs (the
//! plugin never holds a key: `signed-http` with the Signer the Blueprint grants).
//!
//! backup  = mode `snapshot`: CreateDBSnapshot (CreateDBClusterSnapshot for a cluster),
//!           tagged, waited for until `available`; the restore point records the snapshot
//!           and what the instance was (engine and version, class, subnet group, security
//!           groups, port, parameter and option groups, Multi-AZ).
//! restore = side by side: a new instance (or cluster with a writer) from the snapshot with
//!           the recorded settings, `<id>-restored-<snapshot time>`; outputs its name and
//!           endpoint. `swap: true` then renames the live one `<id>-old-<time>` and the new
//!           one `<id>`. The live instance is never deleted.
//! backup  = mode `dump`: a logical dump through the database's endpoint (see `dump`), in the
//!           format of postgres-logical / mysql-logical; its restore loads it into the live
//!           database, each database staged and swapped in.
//! delete  = DeleteDBSnapshot / DeleteDBClusterSnapshot; one already gone counts as done.

mod api;
mod cluster;
mod dump;
mod instance;

use api::Rds;
use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{self as sdk, Action, ActionOutput, ActionRequest, Error, location, log};
use serde::{Deserialize, Serialize};

pub struct Backup;
pub struct Restore;
pub struct Delete;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, Delete]);

const LOCATION: &str = "default";
const RECORD: &str = "rds/snapshot.json";

/// Which database: one DB instance or one Aurora cluster, and where its API is.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// The DB instance identifier.
    pub instance: Option<String>,
    /// The Aurora DB cluster identifier (instead of `instance`).
    pub cluster: Option<String>,
    /// The region the database is in (the Signer's).
    pub region: String,
    /// An RDS-compatible API endpoint instead of AWS's (`http://127.0.0.1:5000`); the
    /// Signer must have the same `endpoint`.
    pub api_endpoint: Option<String>,
    /// How long to wait for a snapshot or instance to become available, in minutes.
    #[serde(default = "an_hour")]
    pub wait_minutes: u64,
}

fn an_hour() -> u64 {
    60
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    #[serde(flatten)]
    pub target: Target,
    /// `snapshot` (default): an RDS snapshot; `dump`: a logical dump (pg_dump -Fc or
    /// mariadb-dump) through the database's endpoint into the location.
    #[serde(default = "snapshot_mode")]
    pub mode: String,
    /// mode dump: connect here (`host:port`: a proxy, a tunnel) instead of the endpoint RDS
    /// describes. The Workload's env must pin it (PGHOST/PGPORT or MYSQL_HOST/MYSQL_TCP_PORT).
    pub endpoint_override: Option<String>,
    /// mode dump: the database user; default: the master user RDS names. The password is the
    /// Workload's `password` secret.
    pub user: Option<String>,
    /// mode dump: the databases to dump; default: all (templates and system ones excluded).
    pub databases: Option<Vec<String>>,
    /// mode dump: databases to leave out.
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// mode dump, postgres engines: roles too (pg_dumpall --globals-only, without passwords,
    /// which RDS lets nobody read).
    #[serde(default = "yes")]
    pub globals: bool,
    /// mode dump, mysql engines: users and grants too.
    #[serde(default)]
    pub users: bool,
    /// mode dump, a DB instance: dump a temporary instance restored from a new snapshot
    /// instead of the live one (no load on it); both are deleted afterwards, however the
    /// backup ends.
    #[serde(default)]
    pub from_snapshot: bool,
}

fn snapshot_mode() -> String {
    "snapshot".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// A snapshot: the new instance's (or cluster's) identifier; default
    /// `<id>-restored-<time>`.
    pub new_name: Option<String>,
    /// A snapshot: then rename the live instance `<id>-old-<time>` and the new one `<id>`.
    #[serde(default)]
    pub swap: bool,
    /// How long to wait for the new instance, in minutes.
    #[serde(default = "an_hour")]
    pub wait_minutes: u64,
    /// A dump: connect here (`host:port`) instead of the endpoint RDS describes now.
    pub endpoint_override: Option<String>,
    /// A dump: the database user; default: the one the dump was made as.
    pub user: Option<String>,
    /// A dump: restore only these databases of it.
    pub databases: Option<Vec<String>>,
    /// A dump: restore the one selected database under this name instead.
    pub target_database: Option<String>,
    /// A dump: replay roles (postgres) or users and grants (mysql) first, when it has them.
    #[serde(default = "yes")]
    pub globals: bool,
    /// A dump: drop each database and load it in place, instead of loading it beside and
    /// swapping it in once complete (the default, which never loses the original).
    #[serde(default)]
    pub replace: bool,
    /// A dump: keep each database a restore replaced as `<name>__previous_<suffix>`.
    #[serde(default = "yes")]
    pub keep_previous: bool,
}

/// What a restore point records: the snapshot and the settings of what it was taken of.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// `instance` or `cluster`.
    pub kind: String,
    pub source: String,
    pub snapshot: String,
    pub engine: String,
    pub engine_version: String,
    pub class: String,
    pub subnet_group: Option<String>,
    pub security_groups: Vec<String>,
    pub port: Option<u16>,
    pub parameter_group: Option<String>,
    pub option_group: Option<String>,
    pub multi_az: bool,
    /// A cluster's writer instance.
    pub cluster_instance: Option<String>,
    /// Where the API was: restores and deletes go there.
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub api_endpoint: Option<String>,
    /// The master user RDS names (a dump connects as it by default).
    #[serde(default)]
    pub master_user: Option<String>,
}

impl Target {
    fn api(&self) -> Rds {
        Rds::new(&self.region, self.api_endpoint.as_deref())
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match (&self.instance, &self.cluster) {
            (Some(_), Some(_)) | (None, None) => {
                p.push("params: name exactly one of `instance` and `cluster`".into())
            }
            (Some(id), None) | (None, Some(id)) if !identifier(id) => p.push(format!(
                "params: {id:?} is not an RDS identifier (a letter, then letters, digits and single hyphens, at most 63)"
            )),
            _ => {}
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            p.push(format!("params.region: {:?} is not a region", self.region));
        }
        p
    }
}

/// An RDS identifier: a letter, then letters, digits and hyphens, no two hyphens in a row,
/// none at the end, at most 63.
fn identifier(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.contains("--")
        && !s.ends_with('-')
}

impl Recorded {
    /// Where a restore of it goes: its subnet group, port and security groups.
    pub fn placement(&self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        if let Some(g) = &self.subnet_group {
            params.push(("DBSubnetGroupName".to_string(), g.clone()));
        }
        if let Some(p) = self.port {
            params.push(("Port".into(), p.to_string()));
        }
        for (i, g) in self.security_groups.iter().enumerate() {
            params.push((
                format!("VpcSecurityGroupIds.VpcSecurityGroupId.{}", i + 1),
                g.clone(),
            ));
        }
        params
    }
}

/// Poll `check` every few seconds until it gives a value, for at most `minutes`.
pub fn wait<T>(
    what: &str,
    minutes: u64,
    mut check: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if started.elapsed().as_secs() > minutes * 60 {
            return Err(Error::Timeout(format!(
                "{what} was not available after {minutes} minutes (params.waitMinutes)"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(15));
    }
}

/// Seconds since the epoch: names made by one backup differ from another's.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = p.target.problems();
        match p.mode.as_str() {
            "snapshot" => {
                let dump_only = [
                    ("endpointOverride", p.endpoint_override.is_some()),
                    ("user", p.user.is_some()),
                    ("databases", p.databases.is_some()),
                    ("excludeDatabases", !p.exclude_databases.is_empty()),
                    ("fromSnapshot", p.from_snapshot),
                ];
                for (name, _) in dump_only.iter().filter(|(_, set)| *set) {
                    problems.push(format!(
                        "params.{name}: is for mode: dump; a snapshot takes the whole instance"
                    ));
                }
            }
            "dump" => {
                if let Some(o) = &p.endpoint_override
                    && let Err(e) = dump::Endpoint::parse(o)
                {
                    problems.push(format!("params.endpointOverride: {e}"));
                }
                if p.from_snapshot && p.target.cluster.is_some() {
                    problems.push(
                        "params.fromSnapshot: is built for DB instances; dump an Aurora cluster live, or snapshot it (mode: snapshot)"
                            .into(),
                    );
                }
                if p.databases.as_ref().is_some_and(|d| d.is_empty()) {
                    problems.push(
                        "params.databases: list at least one database, or leave it out to dump all"
                            .into(),
                    );
                }
            }
            other => problems.push(format!(
                "params.mode: {other:?}; `snapshot` (an RDS snapshot) or `dump` (a logical dump)"
            )),
        }
        sdk::checked(problems)
    }

    fn run(p: BackupParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        if p.mode == "dump" {
            return dump::backup(
                &p.target,
                dump::DumpOptions {
                    endpoint_override: p.endpoint_override,
                    user: p.user,
                    databases: p.databases,
                    exclude_databases: p.exclude_databases,
                    globals: p.globals,
                    users: p.users,
                    from_snapshot: p.from_snapshot,
                },
            );
        }
        let api = p.target.api();
        let minutes = p.target.wait_minutes;
        let stamp = now_secs();
        // Until the restore point's record is stored, a guard deletes the snapshot however
        // the backup ends (a failure, a deadline, coffer killed while RDS copies): no
        // snapshot is left that no restore point names.
        let (mut recorded, snapshot, guard) = match (&p.target.instance, &p.target.cluster) {
            (Some(id), _) => {
                let i = instance::describe(&api, id)?;
                let snap = format!("coffer-{id}-{stamp}");
                let guard = api.guard(
                    &format!("delete snapshot {snap}"),
                    "DeleteDBSnapshot",
                    &[("DBSnapshotIdentifier", snap.clone())],
                )?;
                instance::snapshot(&api, id, &snap, &[("managed-by", "coffer".into())], minutes)?;
                (i.recorded, snap, guard)
            }
            (_, Some(id)) => {
                let (r, _, _) = cluster::describe(&api, id)?;
                let snap = format!("coffer-{id}-{stamp}");
                let guard = api.guard(
                    &format!("delete cluster snapshot {snap}"),
                    "DeleteDBClusterSnapshot",
                    &[("DBClusterSnapshotIdentifier", snap.clone())],
                )?;
                cluster::snapshot(&api, id, &snap, minutes)?;
                (r, snap, guard)
            }
            _ => unreachable!("checked"),
        };
        recorded.snapshot = snapshot.clone();
        recorded.region = p.target.region.clone();
        recorded.api_endpoint = p.target.api_endpoint.clone();
        let store = location::open(LOCATION)?;
        let json =
            serde_json::to_vec_pretty(&recorded).map_err(|e| sdk::internal(e.to_string()))?;
        let info = store.put_bytes(RECORD, &json, &sdk::compressed())?;
        // The restore point names it from now on.
        guard.disarm();
        let mut a = sdk::artifact("rds-snapshot", LOCATION, &info);
        a.metadata = vec![
            ("kind".into(), format!("rds-{}-snapshot", recorded.kind)),
            ("snapshot".into(), snapshot.clone()),
            ("engine".into(), recorded.engine.clone()),
        ];
        log::info(
            "snapshot available",
            &[("snapshot", &snapshot), ("source", &recorded.source)],
        );
        Ok(ActionOutput {
            artifacts: vec![a],
            outputs: vec![
                ("snapshot".into(), snapshot),
                ("engine".into(), recorded.engine),
                ("engineVersion".into(), recorded.engine_version),
                ("class".into(), recorded.class),
            ],
        })
    }
}

/// The restore point's snapshot record, and the API it was made through.
fn recorded(req: &ActionRequest) -> Result<(Recorded, Rds), Error> {
    let a = req
        .input_artifacts
        .iter()
        .find(|a| a.name == "rds-snapshot")
        .ok_or_else(|| {
            sdk::invalid("this restore point holds neither an RDS snapshot nor an RDS dump record")
        })?;
    let bytes = location::open(LOCATION)?.get_bytes(&a.key, 1 << 20)?;
    let r: Recorded = serde_json::from_slice(&bytes)
        .map_err(|e| sdk::internal(format!("the restore point's {}: {e}", a.key)))?;
    let api = Rds::new(&r.region, r.api_endpoint.as_deref());
    Ok((r, api))
}

fn delete(api: &Rds, r: &Recorded) -> Result<(), Error> {
    match r.kind.as_str() {
        "cluster" => cluster::delete_snapshot(api, &r.snapshot),
        _ => instance::delete_snapshot(api, &r.snapshot),
    }
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let is_dump = req.input_artifacts.iter().any(|a| a.name == dump::ARTIFACT);
        let only = |name: &str, set: bool, of: &str, problems: &mut Vec<String>| {
            if set {
                problems.push(format!(
                    "params.{name}: is for restoring {of}; this restore point is {}",
                    if is_dump { "a dump" } else { "a snapshot" }
                ));
            }
        };
        if is_dump {
            only("newName", p.new_name.is_some(), "a snapshot", &mut problems);
            only("swap", p.swap, "a snapshot", &mut problems);
            if let Some(o) = &p.endpoint_override
                && let Err(e) = dump::Endpoint::parse(o)
            {
                problems.push(format!("params.endpointOverride: {e}"));
            }
            if let Err(e) = sdk::select_databases(&req.input_artifacts, p.databases.as_deref()) {
                problems.push(e);
            }
        } else {
            for (name, set) in [
                ("endpointOverride", p.endpoint_override.is_some()),
                ("user", p.user.is_some()),
                ("databases", p.databases.is_some()),
                ("targetDatabase", p.target_database.is_some()),
                ("replace", p.replace),
            ] {
                only(name, set, "a dump", &mut problems);
            }
        }
        if let Some(n) = &p.new_name
            && !identifier(n)
        {
            problems.push(format!("params.newName: {n:?} is not an RDS identifier"));
        }
        sdk::checked(problems)
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        if let Some(r) = dump::record(req)? {
            return dump::restore(
                &r,
                dump::LoadOptions {
                    endpoint_override: p.endpoint_override,
                    user: p.user,
                    databases: p.databases,
                    target_database: p.target_database,
                    globals: p.globals,
                    users: p.globals,
                    replace: p.replace,
                    keep_previous: p.keep_previous,
                },
                req,
            );
        }
        let (r, api) = recorded(req)?;
        let minutes = p.wait_minutes;
        let stamp = r.snapshot.rsplit('-').next().unwrap_or("0").to_string();
        let live = r.source.clone();
        let mut new = p
            .new_name
            .clone()
            .unwrap_or_else(|| format!("{live}-restored-{stamp}"));
        new.truncate(63);
        let new = new.trim_end_matches('-').to_string();
        let mut endpoint = match r.kind.as_str() {
            "cluster" => cluster::restore(&api, &r, &new, minutes)?,
            _ => instance::restore(&api, &r, &new, minutes)?,
        };
        let mut outputs = vec![("snapshot".to_string(), r.snapshot.clone())];
        let mut name = new.clone();
        if p.swap {
            if r.kind == "cluster" {
                return Err(sdk::invalid(format!(
                    "swap is built for DB instances; cluster {new} is restored beside {live} (endpoint {endpoint})"
                )));
            }
            let old = format!("{live}-old-{}", now_secs());
            instance::rename(&api, &live, &old, minutes)?;
            endpoint = match instance::rename(&api, &new, &live, minutes) {
                Ok(e) => e,
                Err(e) => {
                    // Put the live one back under its name; the restored one stays as it is.
                    let back = instance::rename(&api, &old, &live, minutes);
                    return Err(sdk::internal(format!(
                        "renaming {new} to {live} failed ({}); {live} {}",
                        sdk::error_text(&e),
                        match back {
                            Ok(_) => "has its name back".to_string(),
                            Err(b) => format!("is still named {old}: {}", sdk::error_text(&b)),
                        }
                    )));
                }
            };
            outputs.push(("previous".into(), old));
            name = live.clone();
        }
        log::info("restored", &[("instance", &name), ("endpoint", &endpoint)]);
        outputs.push(("instance".into(), name));
        outputs.push(("endpoint".into(), endpoint));
        Ok(ActionOutput {
            artifacts: vec![],
            outputs,
        })
    }
}

impl Action for Delete {
    const NAME: &'static str = "delete";
    type Params = sdk::NoParams;

    fn run(_: sdk::NoParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        // A dump is only objects in the location; a snapshot is also in RDS.
        if dump::record(req)?.is_none() {
            let (r, api) = recorded(req)?;
            delete(&api, &r)?;
        }
        sdk::delete_input_artifacts(req, LOCATION)
    }
}
