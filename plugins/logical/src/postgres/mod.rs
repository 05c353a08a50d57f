//! Logical PostgreSQL backups.
//!
//! backup  = `pg_dumpall --globals-only` (roles, tablespaces) + `pg_dump -Fc -Z0` of each
//!           database, each streamed by the host into the location with zstd.
//! restore = replay globals, then for each database `pg_restore` into a new database from a
//!           stream the host reads (and checksums) out of the location, and swap it with
//!           the existing one by renaming both in one transaction: a restore that fails
//!           leaves the original as it was, and the original is kept as `<db>__previous_…`
//!           (`keepPrevious`). `replace: true` drops and recreates in place instead
//!           (database-level settings and grants restored too; nothing kept on failure).
//! delete  = remove the restore point's objects.
//!
//! The password (if the workload has one) reaches the pg tools as PGPASSWORD through a secret
//! handle: the plugin never sees it, and it is never in argv or in logs.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, ActionOutput, ActionRequest, Cmd, Error, location, log, secrets,
};
use serde::Deserialize;

mod names;
mod staged;
pub use names::Conn;
use names::{object_key_for, quote_ident};

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
    /// The role to connect as (libpq's `user`); default: PGUSER of the workload's
    /// environment, else the operating system user.
    pub user: Option<String>,
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
    /// The role to connect as (libpq's `user`); default: PGUSER of the workload's
    /// environment, else the operating system user.
    pub user: Option<String>,
    #[serde(default = "postgres")]
    pub maintenance_database: String,
    /// Restore into a new database and swap it in only once it is complete (default), or
    /// (`true`) drop the existing database first and restore in place, as pg_restore
    /// --create does: database-level settings, comments and grants come back too, but a
    /// restore that fails leaves no database at all.
    #[serde(default)]
    pub replace: bool,
    /// Keep the database a restore replaced, renamed `<name>__previous_<suffix>` (drop it
    /// once the restore is checked); `false` drops it after a successful swap.
    #[serde(default = "yes")]
    pub keep_previous: bool,
}

fn yes() -> bool {
    true
}
fn postgres() -> String {
    "postgres".to_string()
}

/// What is wrong with backup params, before anything runs.
pub fn check_backup(p: &BackupParams) -> Result<(), Vec<String>> {
    if let Some(dbs) = &p.databases {
        if dbs.is_empty() {
            return Err(vec![
                "params.databases: list at least one database, or leave it out to dump all".into(),
            ]);
        }
        if let Some(bad) = dbs.iter().find(|d| d.is_empty()) {
            return Err(vec![format!(
                "params.databases: empty database name {bad:?}"
            )]);
        }
    }
    Ok(())
}

/// What is wrong with restore params for this restore point, before anything runs.
pub fn check_restore(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
    let selected =
        sdk::select_databases(&req.input_artifacts, p.databases.as_deref()).map_err(|e| vec![e])?;
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

/// The workload's password, if it has one.
fn password() -> Result<Option<secrets::Secret>, Error> {
    sdk::optional_secret("password")
}

/// Dump globals and the databases of the server `server` reaches (with `p.user` as its
/// user) into the location.
pub fn backup(p: BackupParams, server: &Conn) -> Result<ActionOutput, Error> {
    let pw = password()?;
    let store = location::open(LOCATION)?;
    let conn = server.as_user(p.user.as_deref());
    let maint = conn.dbname(&p.maintenance_database);

    let listed = list_databases(&maint, pw.as_ref())?;
    let mut databases = match &p.databases {
        Some(dbs) => dbs.clone(),
        None => listed.iter().map(|d| d.name.clone()).collect(),
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
        .arg(format!("--dbname={}", conn.dbname(db)))
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
        // What a staged restore needs to create the database as it was.
        if let Some(d) = listed.iter().find(|d| &d.name == db) {
            for (k, v) in [
                ("encoding", &d.encoding),
                ("collate", &d.collate),
                ("ctype", &d.ctype),
                ("owner", &d.owner),
            ] {
                a.metadata.push((k.into(), v.clone()));
            }
        }
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

/// A database as the server describes it.
struct Database {
    name: String,
    encoding: String,
    collate: String,
    ctype: String,
    owner: String,
}

/// Unit separator between fields (never in a name in practice), NUL between rows.
const FIELD_SEPARATOR: &str = "\u{1f}";

fn list_databases(maint: &str, pw: Option<&secrets::Secret>) -> Result<Vec<Database>, Error> {
    let out = Cmd::new([
        "psql",
        "-X",
        "--no-password",
        "-A",
        "-t",
        "-q",
        "-0",
        "-F",
        FIELD_SEPARATOR,
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .arg(format!("--dbname={maint}"))
    .args([
        "-c",
        "SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
    ])
    .secret_env("PGPASSWORD", pw)
    .run(None, MAX_LIST_BYTES)?;
    let text = String::from_utf8(out)
        .map_err(|_| sdk::internal("psql printed a database name that is not UTF-8"))?;
    text.split('\0')
        .map(|s| s.trim_end_matches('\n'))
        .filter(|s| !s.is_empty())
        .map(|row| {
            let f: Vec<&str> = row.split(FIELD_SEPARATOR).collect();
            match f.as_slice() {
                [name, encoding, collate, ctype, owner] => Ok(Database {
                    name: name.to_string(),
                    encoding: encoding.to_string(),
                    collate: collate.to_string(),
                    ctype: ctype.to_string(),
                    owner: owner.to_string(),
                }),
                _ => Err(sdk::internal(format!(
                    "psql listed a database in an unexpected shape: {row:?}"
                ))),
            }
        })
        .collect()
}

/// Restore the restore point's databases (and globals) into the server `server` reaches.
pub fn restore(
    p: RestoreParams,
    req: &ActionRequest,
    server: &Conn,
) -> Result<ActionOutput, Error> {
    let selected = sdk::select_databases(&req.input_artifacts, p.databases.as_deref())
        .map_err(sdk::invalid)?;
    let pw = password()?;
    let store = location::open(LOCATION)?;
    let conn = server.as_user(p.user.as_deref());
    let maint = conn.dbname(&p.maintenance_database);

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
    let mut previous = Vec::new();
    for (i, (db, artifact)) in selected.iter().enumerate() {
        log::progress("databases", i as u64, Some(selected.len() as u64));
        let target = p.target_database.clone().unwrap_or_else(|| db.clone());
        // A database cannot be renamed or dropped over a connection to itself: work from
        // template1 when restoring the maintenance database.
        let maint = if target == p.maintenance_database {
            conn.dbname("template1")
        } else {
            maint.clone()
        };
        if p.replace {
            replace_in_place(&store, artifact, db, &target, (&maint, &conn), pw.as_ref())?;
        } else if let Some(prev) = staged::restore(
            &store,
            artifact,
            &target,
            (&maint, &conn),
            pw.as_ref(),
            p.keep_previous,
        )? {
            previous.push(prev);
        }
        log::info("restored database", &[("database", db), ("as", &target)]);
        restored.push(target);
    }
    log::progress(
        "databases",
        selected.len() as u64,
        Some(selected.len() as u64),
    );
    let mut outputs = vec![("databases".into(), restored.join(","))];
    if !previous.is_empty() {
        outputs.push(("previous".into(), previous.join(",")));
    }
    Ok(ActionOutput {
        artifacts: vec![],
        outputs,
    })
}

/// The destructive path (`replace: true`): drop, then `pg_restore --create` (or into a new
/// empty database under another name).
fn replace_in_place(
    store: &location::Store,
    artifact: &sdk::Artifact,
    db: &str,
    target: &str,
    (maint, conn): (&str, &Conn),
    pw: Option<&secrets::Secret>,
) -> Result<(), Error> {
    let drop_sql = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(target)
    );
    psql_command(maint, pw, &drop_sql)?;
    let restore = if target == db {
        // --create recreates the database with its original encoding, locale, owner
        // and settings.
        Cmd::new(["pg_restore", "--create", "--exit-on-error", "--no-password"])
            .arg(format!("--dbname={maint}"))
    } else {
        let create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(target));
        psql_command(maint, pw, &create)?;
        Cmd::new(["pg_restore", "--exit-on-error", "--no-password"])
            .arg(format!("--dbname={}", conn.dbname(target)))
    };
    restore
        .secret_env("PGPASSWORD", pw)
        .stdin_from(store, &artifact.key)
}

fn psql_command(maint: &str, pw: Option<&secrets::Secret>, sql: &str) -> Result<(), Error> {
    Cmd::new(["psql", "-X", "--no-password", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={maint}"))
        .args(["-c", sql])
        .secret_env("PGPASSWORD", pw)
        .run(None, 64 * 1024)
        .map(|_| ())
}
