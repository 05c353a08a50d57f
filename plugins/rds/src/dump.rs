//! `mode: dump`: a logical dump of an RDS database through its endpoint, in the object format
//! of postgres-logical and mysql-logical (`coffer_logical`): `pg_dump -Fc` for the postgres
//! engines, `mariadb-dump` for the mysql and mariadb ones. The endpoint comes from
//! DescribeDBInstances / DescribeDBClusters (or `endpointOverride`, for a proxy or a tunnel);
//! the password is the Workload's `password` secret, which the host hands only to a process
//! whose server the Workload pins (PGHOST/PGPORT, MYSQL_HOST/MYSQL_TCP_PORT), so a plugin
//! cannot send it anywhere else.
//!
//! `fromSnapshot: true` dumps a copy instead of the live database, as Kanister's RDS export
//! does, without its flaws: a new snapshot, a temporary instance restored from it, the dump,
//! then both deleted. Each deletion is a request guard registered before the step it undoes,
//! so whatever ends the action (a failed dump, a deadline, a killed coffer: the next one
//! sends it) the temporary instance and snapshot do not outlive it.

use crate::api::Rds;
use crate::{LOCATION, Recorded, Target, cluster, instance, now_secs};
use coffer_logical::{mysql, postgres};
use coffer_plugin_sdk::{self as sdk, ActionOutput, ActionRequest, Error, location, log};
use serde::{Deserialize, Serialize};

/// Where a dump restore point records what it was made of.
pub const RECORD: &str = "rds/dump.json";
/// The artifact naming that record.
pub const ARTIFACT: &str = "rds-dump";

/// The two families of engines a logical dump is made for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    /// The family of an RDS engine name; the others (Oracle, SQL Server, Db2) have no dump here.
    pub fn of(engine: &str) -> Result<Engine, Error> {
        match engine {
            "postgres" | "aurora-postgresql" => Ok(Engine::Postgres),
            "mysql" | "mariadb" | "aurora-mysql" | "aurora" => Ok(Engine::Mysql),
            other => Err(sdk::invalid(format!(
                "mode: dump is built for the postgres, mysql and mariadb engines (and their Aurora kinds); this database's engine is {other:?}: use mode: snapshot"
            ))),
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        }
    }

    /// The env the Workload must pin for the host to hand the password to this endpoint.
    fn pins(self, e: &Endpoint) -> String {
        let (host, port) = match self {
            Engine::Postgres => ("PGHOST", "PGPORT"),
            Engine::Mysql => ("MYSQL_HOST", "MYSQL_TCP_PORT"),
        };
        if e.port == self.default_port() {
            format!("{host}: {}", e.host)
        } else {
            format!("{host}: {}, {port}: {}", e.host, e.port)
        }
    }
}

/// A database endpoint, `host:port`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port` (IPv6 in brackets); a host that could be taken for an option or carries
    /// more than a name is refused.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let bad = || format!("{s:?} is not host:port");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| bad())?;
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_');
        if host.is_empty() || host.starts_with('-') || !host.chars().all(fine) || port == 0 {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// The port to give the client: none for the engine's default, so a Workload need only
    /// pin the host then.
    fn port_for(&self, engine: Engine) -> Option<u16> {
        (self.port != engine.default_port()).then_some(self.port)
    }
}

/// What a dump restore point records besides the dumps: where they came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpRecord {
    /// `instance` or `cluster`.
    pub kind: String,
    pub source: String,
    pub engine: String,
    pub engine_version: String,
    /// The endpoint RDS described at backup time.
    pub endpoint: Option<String>,
    pub user: String,
    pub region: String,
    pub api_endpoint: Option<String>,
    /// `fromSnapshot`: the snapshot the temporary instance that was dumped came from
    /// (deleted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// What to dump, from the backup params.
pub struct DumpOptions {
    pub endpoint_override: Option<String>,
    pub user: Option<String>,
    pub databases: Option<Vec<String>>,
    pub exclude_databases: Vec<String>,
    pub globals: bool,
    pub users: bool,
    pub from_snapshot: bool,
}

/// What to restore, from the restore params.
pub struct LoadOptions {
    pub endpoint_override: Option<String>,
    pub user: Option<String>,
    pub databases: Option<Vec<String>>,
    pub target_database: Option<String>,
    pub globals: bool,
    pub users: bool,
    pub replace: bool,
    pub keep_previous: bool,
}

/// The database as RDS describes it now: its record (no time-bound parts), endpoint and
/// settings.
fn describe(
    api: &Rds,
    kind: &str,
    id: &str,
) -> Result<(DumpRecord, Option<Endpoint>, Recorded), Error> {
    let (r, status, endpoint) = if kind == "cluster" {
        cluster::describe(api, id)?
    } else {
        let i = instance::describe(api, id)?;
        (i.recorded, i.status, i.endpoint)
    };
    if status != "available" {
        log::warn(
            "the database is not available; the dump may fail",
            &[("status", &status)],
        );
    }
    let endpoint = endpoint.and_then(|e| Endpoint::parse(&e).ok());
    let record = DumpRecord {
        kind: kind.to_string(),
        source: id.to_string(),
        engine: r.engine.clone(),
        engine_version: r.engine_version.clone(),
        endpoint: endpoint.as_ref().map(|e| format!("{}:{}", e.host, e.port)),
        user: r.master_user.clone().unwrap_or_default(),
        region: String::new(),
        api_endpoint: None,
        snapshot: None,
    };
    Ok((record, endpoint, r))
}

/// `fromSnapshot`: a new snapshot of an instance and a temporary instance restored from
/// it, each deleted by a guard however the action ends.
struct Temporary {
    instance: String,
    snapshot: String,
    endpoint: Option<Endpoint>,
    instance_guard: sdk::runtime::Guard,
    snapshot_guard: sdk::runtime::Guard,
}

impl Temporary {
    fn make(api: &Rds, id: &str, source: &Recorded, minutes: u64) -> Result<Temporary, Error> {
        let stamp = now_secs();
        let snapshot = format!("coffer-{id}-{stamp}");
        // Each guard before the step it undoes: a snapshot or instance that is never made
        // is answered 404, which counts as deleted.
        let snapshot_guard = api.guard(
            &format!("delete snapshot {snapshot}"),
            "DeleteDBSnapshot",
            &[("DBSnapshotIdentifier", snapshot.clone())],
        )?;
        let tags = [
            ("managed-by", "coffer".to_string()),
            ("coffer-temporary", "dump".into()),
        ];
        instance::snapshot(api, id, &snapshot, &tags, minutes)?;
        let temp = temporary_name(id, stamp);
        let instance_guard = api.guard(
            &format!("delete temporary instance {temp}"),
            "DeleteDBInstance",
            &[
                ("DBInstanceIdentifier", temp.clone()),
                ("SkipFinalSnapshot", "true".into()),
                ("DeleteAutomatedBackups", "true".into()),
            ],
        )?;
        let mut settings = source.clone();
        settings.snapshot = snapshot.clone();
        settings.multi_az = false;
        log::info(
            "restoring a temporary instance to dump",
            &[("instance", &temp), ("snapshot", &snapshot)],
        );
        let endpoint = instance::restore(api, &settings, &temp, minutes)?;
        Ok(Temporary {
            instance: temp,
            snapshot,
            endpoint: Endpoint::parse(&endpoint).ok(),
            instance_guard,
            snapshot_guard,
        })
    }

    /// Delete both now (the guards, fired).
    fn remove(self) -> Result<(), Error> {
        let instance = self.instance_guard.fire();
        let snapshot = self.snapshot_guard.fire();
        instance.map_err(|e| {
            sdk::internal(format!(
                "the dump is complete, but deleting the temporary instance {} failed ({}); delete it yourself",
                self.instance,
                sdk::error_text(&e)
            ))
        })?;
        snapshot.map_err(|e| {
            sdk::internal(format!(
                "the dump is complete, but deleting the temporary snapshot {} failed ({}); delete it yourself",
                self.snapshot,
                sdk::error_text(&e)
            ))
        })?;
        log::info(
            "deleted the temporary instance and snapshot",
            &[("instance", &self.instance)],
        );
        Ok(())
    }
}

/// `<id>-dump-<stamp>`, within RDS's 63 characters and with no `--`.
fn temporary_name(id: &str, stamp: u64) -> String {
    let suffix = format!("-dump-{stamp}");
    let keep = 63usize.saturating_sub(suffix.len()).min(id.len());
    format!("{}{suffix}", id[..keep].trim_end_matches('-'))
}

/// Where to connect: the override, else the endpoint RDS gave.
fn endpoint(over: Option<&str>, described: Option<Endpoint>, id: &str) -> Result<Endpoint, Error> {
    match over {
        Some(o) => Endpoint::parse(o).map_err(|e| sdk::invalid(format!("params.endpointOverride: {e}"))),
        None => described.ok_or_else(|| {
            sdk::invalid(format!(
                "RDS gives {id} no endpoint yet (is it still being created?); wait, or set params.endpointOverride"
            ))
        }),
    }
}

/// A denied exec means the Workload does not pin the endpoint: say which env to set.
fn explain(e: Error, engine: Engine, at: &Endpoint) -> Error {
    match e {
        Error::Denied(m) => Error::Denied(format!(
            "{m}. The database is reached at {}:{}; pin it in the Workload's env ({}) so the host hands it the password",
            at.host,
            at.port,
            engine.pins(at)
        )),
        other => other,
    }
}

/// Dump the target's databases into the location; the output of the logical plugin plus
/// the record.
pub fn backup(t: &Target, o: DumpOptions) -> Result<ActionOutput, Error> {
    let api = t.api();
    let (kind, id) = match (&t.instance, &t.cluster) {
        (Some(id), _) => ("instance", id),
        (_, Some(id)) => ("cluster", id),
        _ => unreachable!("checked"),
    };
    let (mut record, described, settings) = describe(&api, kind, id)?;
    let engine = Engine::of(&record.engine)?;
    let temporary = match o.from_snapshot {
        true => Some(Temporary::make(&api, id, &settings, t.wait_minutes)?),
        false => None,
    };
    let described = match &temporary {
        Some(tmp) => tmp.endpoint.clone(),
        None => described,
    };
    let at = endpoint(o.endpoint_override.as_deref(), described, id)?;
    let user = o.user.clone().unwrap_or_else(|| record.user.clone());
    if user.is_empty() {
        return Err(sdk::invalid(format!(
            "RDS names no master user for {id}; set params.user"
        )));
    }
    record.user = user.clone();
    record.region = t.region.clone();
    record.api_endpoint = t.api_endpoint.clone();
    log::info(
        "dumping",
        &[
            ("engine", &record.engine),
            ("endpoint", &format!("{}:{}", at.host, at.port)),
            ("user", &user),
        ],
    );
    let dumped = match engine {
        Engine::Postgres => postgres::backup(
            postgres::BackupParams {
                databases: o.databases,
                exclude_databases: o.exclude_databases,
                globals: o.globals,
                // RDS lets nobody read role passwords (pg_authid).
                no_role_passwords: true,
                user: Some(user),
                maintenance_database: "postgres".into(),
            },
            &postgres::Conn {
                host: Some(at.host.clone()),
                port: at.port_for(engine),
                user: None,
            },
        ),
        Engine::Mysql => mysql::backup(mysql::BackupParams {
            host: Some(at.host.clone()),
            port: at.port_for(engine),
            user: Some(user),
            databases: o.databases,
            exclude_databases: o.exclude_databases,
            users: o.users,
        }),
    };
    // A failed dump leaves the temporary instance and snapshot to their guards.
    let mut out = dumped.map_err(|e| explain(e, engine, &at))?;
    if let Some(tmp) = temporary {
        record.snapshot = Some(tmp.snapshot.clone());
        out.outputs.push(("snapshot".into(), tmp.snapshot.clone()));
        out.outputs
            .push(("dumpedInstance".into(), tmp.instance.clone()));
        tmp.remove()?;
    }
    let json = serde_json::to_vec_pretty(&record).map_err(|e| sdk::internal(e.to_string()))?;
    let info = location::open(LOCATION)?.put_bytes(RECORD, &json, &sdk::compressed())?;
    let mut a = sdk::artifact(ARTIFACT, LOCATION, &info);
    a.metadata = vec![
        ("kind".into(), format!("rds-{kind}-dump")),
        ("engine".into(), record.engine.clone()),
    ];
    out.artifacts.push(a);
    out.outputs.push(("engine".into(), record.engine));
    out.outputs
        .push(("endpoint".into(), format!("{}:{}", at.host, at.port)));
    Ok(out)
}

/// The restore point's dump record, if it is a dump.
pub fn record(req: &ActionRequest) -> Result<Option<DumpRecord>, Error> {
    sdk::json_artifact(req, ARTIFACT, LOCATION)
}

/// Load the dumps into the database they came from (as it is now: its endpoint is looked up
/// again), each database staged and swapped in as the logical plugins do.
pub fn restore(r: &DumpRecord, o: LoadOptions, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let engine = Engine::of(&r.engine)?;
    let described = match &o.endpoint_override {
        Some(_) => None,
        None => {
            let api = Rds::new(&r.region, r.api_endpoint.as_deref());
            describe(&api, &r.kind, &r.source)?.1
        }
    };
    let at = endpoint(o.endpoint_override.as_deref(), described, &r.source)?;
    let user = o.user.unwrap_or_else(|| r.user.clone());
    log::info(
        "loading the dump",
        &[
            ("into", &r.source),
            ("endpoint", &format!("{}:{}", at.host, at.port)),
        ],
    );
    let loaded = match engine {
        Engine::Postgres => postgres::restore(
            postgres::RestoreParams {
                databases: o.databases,
                target_database: o.target_database,
                globals: o.globals,
                user: Some(user),
                maintenance_database: "postgres".into(),
                replace: o.replace,
                keep_previous: o.keep_previous,
            },
            req,
            &postgres::Conn {
                host: Some(at.host.clone()),
                port: at.port_for(engine),
                user: None,
            },
        ),
        Engine::Mysql => mysql::restore(
            mysql::RestoreParams {
                host: Some(at.host.clone()),
                port: at.port_for(engine),
                user: Some(user),
                databases: o.databases,
                target_database: o.target_database,
                users: o.users,
                replace: o.replace,
                keep_previous: o.keep_previous,
            },
            req,
        ),
    };
    let mut out = loaded.map_err(|e| explain(e, engine, &at))?;
    out.outputs.push(("instance".into(), r.source.clone()));
    out.outputs
        .push(("endpoint".into(), format!("{}:{}", at.host, at.port)));
    Ok(out)
}
