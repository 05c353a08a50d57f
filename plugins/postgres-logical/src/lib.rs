//! postgres-logical: logical PostgreSQL backups.
//!
//! backup  = `pg_dumpall --globals-only` (roles, tablespaces) + `pg_dump -Fc -Z0` of each
//!           database, each streamed by the host into the location with zstd.
//! restore = replay globals, then for each database drop it, recreate it and `pg_restore`
//!           from a stream the host reads (and checksums) out of the location.
//! delete  = remove the restore point's objects.
//!
//! The password (if the workload has one) reaches the pg tools as PGPASSWORD through a secret
//! handle: the plugin never sees it, and it is never in argv or in logs.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, ActionOutput, ActionRequest, Cmd, Error, Plugin, location, log, secrets,
};
use serde::Deserialize;

mod names;
use names::{conninfo_dbname, object_key_for, quote_ident};

pub struct PostgresLogical;

sdk::export_plugin!(PostgresLogical, "manifest.json");

const LOCATION: &str = "default";
const GLOBALS_KEY: &str = "globals.sql";
/// psql's output cap for the database list.
const MAX_LIST_BYTES: u32 = 4 << 20;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// Databases to dump; default: every database that accepts connections, templates
    /// excluded.
    pub databases: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// Dump roles and tablespaces (pg_dumpall --globals-only).
    #[serde(default = "yes")]
    pub globals: bool,
    #[serde(default)]
    pub no_role_passwords: bool,
    /// The database to connect to for listing and globals.
    #[serde(default = "postgres")]
    pub maintenance_database: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    /// Restore only these databases of the restore point.
    pub databases: Option<Vec<String>>,
    /// Restore the one selected database under this name instead.
    pub target_database: Option<String>,
    /// Replay roles and tablespaces first; errors for roles that exist are ignored.
    #[serde(default = "yes")]
    pub globals: bool,
    #[serde(default = "postgres")]
    pub maintenance_database: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {}

fn yes() -> bool {
    true
}
fn postgres() -> String {
    "postgres".to_string()
}

impl Plugin for PostgresLogical {
    fn params_schema(action: &str) -> Option<serde_json::Value> {
        match action {
            "backup" => Some(sdk::schema_for::<BackupParams>()),
            "restore" => Some(sdk::schema_for::<RestoreParams>()),
            "delete" => Some(sdk::schema_for::<DeleteParams>()),
            _ => None,
        }
    }

    fn validate(req: &ActionRequest) -> Result<(), Vec<String>> {
        match req.action.as_str() {
            "backup" => {
                let p: BackupParams = sdk::params(req)?;
                if let Some(dbs) = &p.databases {
                    if dbs.is_empty() {
                        return Err(vec!["params.databases: list at least one database, or leave it out to dump all".into()]);
                    }
                    if let Some(bad) = dbs.iter().find(|d| d.is_empty()) {
                        return Err(vec![format!(
                            "params.databases: empty database name {bad:?}"
                        )]);
                    }
                }
                Ok(())
            }
            "restore" => {
                let p: RestoreParams = sdk::params(req)?;
                let selected = sdk::select_databases(&req.input_artifacts, p.databases.as_deref())
                    .map_err(|e| vec![e])?;
                if p.target_database.is_some() && selected.len() != 1 {
                    return Err(vec![format!(
                        "params.targetDatabase: needs exactly one database to restore, but {} are selected ({}); add params.databases with one name",
                        selected.len(),
                        selected
                            .iter()
                            .map(|(d, _)| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )]);
                }
                Ok(())
            }
            "delete" => sdk::params::<DeleteParams>(req).map(|_| ()),
            other => Err(vec![format!(
                "unknown action {other:?}: this plugin has backup, restore and delete"
            )]),
        }
    }

    fn run(req: ActionRequest) -> Result<ActionOutput, Error> {
        Self::validate(&req).map_err(|e| sdk::invalid(e.join("; ")))?;
        match req.action.as_str() {
            "backup" => backup(&req),
            "restore" => restore(&req),
            "delete" => sdk::delete_input_artifacts(&req, LOCATION),
            other => Err(sdk::invalid(format!("unknown action {other:?}"))),
        }
    }
}

/// The workload's password, if it has one.
fn password() -> Result<Option<secrets::Secret>, Error> {
    sdk::optional_secret("password")
}

fn backup(req: &ActionRequest) -> Result<ActionOutput, Error> {
    let p: BackupParams = sdk::params(req).map_err(|e| sdk::invalid(e.join("; ")))?;
    let pw = password()?;
    let store = location::open(LOCATION)?;
    let maint = conninfo_dbname(&p.maintenance_database);

    let mut databases = match &p.databases {
        Some(dbs) => dbs.clone(),
        None => list_databases(&maint, pw.as_ref())?,
    };
    databases.retain(|d| !p.exclude_databases.contains(d));
    if databases.is_empty() {
        return Err(sdk::invalid(
            "no database left to back up after excludeDatabases",
        ));
    }
    log::info("backing up", &[("databases", &databases.join(","))]);

    let mut artifacts = Vec::new();
    let zstd = sdk::compressed();

    if p.globals {
        let mut cmd = Cmd::new(["pg_dumpall", "--globals-only", "--no-password"])
            .arg(format!("--dbname={maint}"))
            .secret_env("PGPASSWORD", pw.as_ref());
        if p.no_role_passwords {
            cmd = cmd.arg("--no-role-passwords");
        }
        let info = cmd.stdout_to(&store, GLOBALS_KEY, &zstd)?;
        let mut a = sdk::artifact("globals", LOCATION, &info);
        a.metadata.push(("kind".into(), "globals".into()));
        artifacts.push(a);
    }

    for (i, db) in databases.iter().enumerate() {
        log::progress("databases", i as u64, Some(databases.len() as u64));
        let cmd = Cmd::new([
            "pg_dump",
            "--format=custom",
            "--compress=0",
            "--no-password",
        ])
        .arg(format!("--dbname={}", conninfo_dbname(db)))
        .secret_env("PGPASSWORD", pw.as_ref());
        let key = object_key_for(db);
        let info = cmd.stdout_to(&store, &key, &zstd)?;
        log::info(
            "dumped database",
            &[("database", db), ("bytes", &info.size.to_string())],
        );
        let mut a = sdk::artifact(&format!("database/{db}"), LOCATION, &info);
        a.metadata.push(("kind".into(), "database".into()));
        a.metadata.push(("database".into(), db.clone()));
        a.metadata.push(("format".into(), "pg_dump-custom".into()));
        artifacts.push(a);
    }
    log::progress(
        "databases",
        databases.len() as u64,
        Some(databases.len() as u64),
    );

    Ok(ActionOutput {
        artifacts,
        outputs: vec![("databases".into(), databases.join(","))],
    })
}

fn list_databases(maint: &str, pw: Option<&secrets::Secret>) -> Result<Vec<String>, Error> {
    let out = Cmd::new([
        "psql",
        "-X",
        "--no-password",
        "-A",
        "-t",
        "-q",
        "-0",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .arg(format!("--dbname={maint}"))
    .args([
        "-c",
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
    ])
    .secret_env("PGPASSWORD", pw)
    .run(None, MAX_LIST_BYTES)?;
    let text = String::from_utf8(out)
        .map_err(|_| sdk::internal("psql printed a database name that is not UTF-8"))?;
    Ok(text
        .split('\0')
        .map(|s| s.trim_end_matches('\n'))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

fn restore(req: &ActionRequest) -> Result<ActionOutput, Error> {
    let p: RestoreParams = sdk::params(req).map_err(|e| sdk::invalid(e.join("; ")))?;
    let selected = sdk::select_databases(&req.input_artifacts, p.databases.as_deref())
        .map_err(sdk::invalid)?;
    let pw = password()?;
    let store = location::open(LOCATION)?;
    let maint = conninfo_dbname(&p.maintenance_database);

    let globals = req
        .input_artifacts
        .iter()
        .find(|a| sdk::meta(a, "kind") == Some("globals"));
    if p.globals
        && let Some(g) = globals
    {
        // Roles that already exist (postgres itself at least) make psql print errors and
        // go on; that is what we want, so no ON_ERROR_STOP here.
        Cmd::new(["psql", "-X", "--no-password", "-q"])
            .arg(format!("--dbname={maint}"))
            .secret_env("PGPASSWORD", pw.as_ref())
            .stdin_from(&store, &g.key)?;
        log::info("replayed globals", &[]);
    }

    let mut restored = Vec::new();
    for (i, (db, artifact)) in selected.iter().enumerate() {
        log::progress("databases", i as u64, Some(selected.len() as u64));
        let target = p.target_database.clone().unwrap_or_else(|| db.clone());
        // A database cannot be dropped over a connection to itself: work from template1
        // when restoring the maintenance database.
        let maint = if target == p.maintenance_database {
            conninfo_dbname("template1")
        } else {
            maint.clone()
        };
        let drop_sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&target)
        );
        psql_command(&maint, pw.as_ref(), &drop_sql)?;
        let restore = if target == *db {
            // --create recreates the database with its original encoding, locale, owner
            // and settings.
            Cmd::new(["pg_restore", "--create", "--exit-on-error", "--no-password"])
                .arg(format!("--dbname={maint}"))
        } else {
            let create = format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_ident(&target)
            );
            psql_command(&maint, pw.as_ref(), &create)?;
            Cmd::new(["pg_restore", "--exit-on-error", "--no-password"])
                .arg(format!("--dbname={}", conninfo_dbname(&target)))
        };
        restore
            .secret_env("PGPASSWORD", pw.as_ref())
            .stdin_from(&store, &artifact.key)?;
        log::info("restored database", &[("database", db), ("as", &target)]);
        restored.push(target);
    }
    log::progress(
        "databases",
        selected.len() as u64,
        Some(selected.len() as u64),
    );
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![("databases".into(), restored.join(","))],
    })
}

fn psql_command(maint: &str, pw: Option<&secrets::Secret>, sql: &str) -> Result<(), Error> {
    Cmd::new(["psql", "-X", "--no-password", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={maint}"))
        .args(["-c", sql])
        .secret_env("PGPASSWORD", pw)
        .run(None, 64 * 1024)
        .map(|_| ())
}
