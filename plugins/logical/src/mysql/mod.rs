//! Logical MariaDB / MySQL backups.
//!
//! backup  = the user databases are listed with their character set and collation, then
//!           each is dumped with `mariadb-dump --single-transaction --routines --triggers
//!           --events` (a consistent InnoDB snapshot per database, no global lock), streamed
//!           by the host into the location; optionally users and grants
//!           (`--system=users`).
//! restore = users and grants first (when present), then for each database: replay the
//!           dump into a new database with its recorded character set and collation, and
//!           only then swap it with the existing one (see `staged`): a restore that fails
//!           leaves the original as it was, which is kept as `<db>__previous_…`
//!           (`keepPrevious`). `replace: true` drops and replays in place instead.
//! delete  = remove the restore point's objects.
//!
//! The password reaches the tools as MYSQL_PWD through a secret handle: never in argv.

use coffer_plugin_sdk::JsonSchema;
use coffer_plugin_sdk::{
    self as sdk, ActionOutput, ActionRequest, Cmd, Error, location, log, secrets,
};
use serde::Deserialize;

mod names;
mod staged;
use names::{object_key_for, quote_ident, quote_string, unescape_batch};

const LOCATION: &str = "default";
const USERS_KEY: &str = "users.sql";
/// Databases that belong to the server, never dumped as data.
const SYSTEM_DATABASES: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];
const MAX_LIST_BYTES: u32 = 4 << 20;

/// How to reach the server; each field falls back to the client's default (which honours
/// MYSQL_HOST and MYSQL_TCP_PORT from the workload's env).
#[derive(Debug, Default, Clone)]
pub struct Connection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    /// Server host. Give it (and port) for TCP: mariadb-dump ignores MYSQL_HOST. Default:
    /// the client's, the local socket.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Default: the client's (the OS user). The password is the `password` secret.
    pub user: Option<String>,
    /// Databases to dump; default: every database but the system ones.
    pub databases: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// Also dump users and grants (mariadb-dump --system=users).
    #[serde(default)]
    pub users: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreParams {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// Restore only these databases of the restore point.
    pub databases: Option<Vec<String>>,
    /// Restore the one selected database under this name instead.
    pub target_database: Option<String>,
    /// Replay users and grants first, when the backup has them (existing users are kept).
    #[serde(default = "yes")]
    pub users: bool,
    /// Replay into a new database and swap it in only once it is complete (default), or
    /// (`true`) drop the existing database first and replay in place: a restore that fails
    /// then leaves nothing.
    #[serde(default)]
    pub replace: bool,
    /// Keep the tables and definitions a restore replaced in `<name>__previous_<suffix>`;
    /// `false` drops them after a successful swap.
    #[serde(default = "yes")]
    pub keep_previous: bool,
}

fn yes() -> bool {
    true
}

impl BackupParams {
    fn conn(&self) -> Connection {
        Connection {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
        }
    }
}

impl RestoreParams {
    fn conn(&self) -> Connection {
        Connection {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
        }
    }
}

/// A database name the tools take as a name, never as an option.
fn check_name(field: &str, name: &str, problems: &mut Vec<String>) {
    if name.is_empty() || name.starts_with('-') || name.len() > 64 {
        problems.push(format!(
            "{field}: {name:?} is not a database name (empty, longer than 64, or starting with '-')"
        ));
    }
}

fn check_conn(c: &Connection, problems: &mut Vec<String>) {
    if let Some(h) = &c.host
        && (h.is_empty() || h.starts_with('-'))
    {
        problems.push(format!("params.host: {h:?} is not a host name"));
    }
    if c.port == Some(0) {
        problems.push("params.port: must be between 1 and 65535".into());
    }
    if let Some(u) = &c.user
        && (u.is_empty() || u.starts_with('-'))
    {
        problems.push(format!("params.user: {u:?} is not a user name"));
    }
}

/// What is wrong with backup params, before anything runs.
pub fn check_backup(p: &BackupParams) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    check_conn(&p.conn(), &mut problems);
    if let Some(dbs) = &p.databases {
        if dbs.is_empty() {
            problems.push(
                "params.databases: list at least one database, or leave it out to dump all".into(),
            );
        }
        for d in dbs {
            check_name("params.databases", d, &mut problems);
        }
    }
    sdk::checked(problems)
}

/// What is wrong with restore params for this restore point, before anything runs.
pub fn check_restore(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    check_conn(&p.conn(), &mut problems);
    match sdk::select_databases(&req.input_artifacts, p.databases.as_deref()) {
        Err(e) => problems.push(e),
        Ok(selected) => {
            if let Some(t) = &p.target_database {
                check_name("params.targetDatabase", t, &mut problems);
                if selected.len() != 1 {
                    problems.push(format!(
                        "params.targetDatabase: needs exactly one database to restore, but {} are selected; add params.databases with one name",
                        selected.len()
                    ));
                }
            }
        }
    }
    sdk::checked(problems)
}

/// `program --no-defaults` (no option files: the workload's env and params say it all) with
/// the connection flags and the password.
pub fn client<'a>(program: &str, c: &Connection, pw: Option<&'a secrets::Secret>) -> Cmd<'a> {
    let mut cmd = Cmd::new([program, "--no-defaults"]);
    if let Some(h) = &c.host {
        cmd = cmd.arg(format!("--host={h}"));
    }
    if let Some(p) = c.port {
        cmd = cmd.arg(format!("--port={p}"));
    }
    if let Some(u) = &c.user {
        cmd = cmd.arg(format!("--user={u}"));
    }
    cmd.secret_env("MYSQL_PWD", pw)
}

/// One database as listed: name, character set, collation.
struct Schema {
    name: String,
    charset: String,
    collation: String,
}

fn list_databases(c: &Connection, pw: Option<&secrets::Secret>) -> Result<Vec<Schema>, Error> {
    let excluded: Vec<String> = SYSTEM_DATABASES.iter().map(|d| quote_string(d)).collect();
    let sql = format!(
        "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ({}) ORDER BY 1",
        excluded.join(",")
    );
    let out = client("mariadb", c, pw)
        .args(["--batch", "--skip-column-names", "-e", &sql])
        .run(None, MAX_LIST_BYTES)?;
    let text = String::from_utf8(out)
        .map_err(|_| sdk::internal("mariadb printed a database name that is not UTF-8"))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                [n, cs, co] => Ok(Schema {
                    name: unescape_batch(n),
                    charset: cs.to_string(),
                    collation: co.to_string(),
                }),
                _ => Err(sdk::internal(format!(
                    "unexpected line from mariadb: {l:?}"
                ))),
            }
        })
        .collect()
}

/// Dump the databases (and users) of the server the params reach into the location.
pub fn backup(p: BackupParams) -> Result<ActionOutput, Error> {
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;
    let all = list_databases(&p.conn(), pw.as_ref())?;
    let mut selected: Vec<&Schema> = match &p.databases {
        None => all.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter().find(|s| &s.name == n).ok_or_else(|| {
                    sdk::invalid(format!(
                        "params.databases: database {n:?} does not exist on the server"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    selected.retain(|s| !p.exclude_databases.contains(&s.name));
    if selected.is_empty() && !p.users {
        return Err(sdk::invalid(
            "no database to back up (none besides the system ones, or all excluded)",
        ));
    }
    let names: Vec<&str> = selected.iter().map(|s| s.name.as_str()).collect();
    log::info("backing up", &[("databases", &names.join(","))]);
    let zstd = sdk::compressed();
    let mut artifacts = Vec::new();

    if p.users {
        let info = client("mariadb-dump", &p.conn(), pw.as_ref())
            .args(["--system=users", "--insert-ignore", "--skip-dump-date"])
            .stdout_to(&store, USERS_KEY, &zstd)?;
        let mut a = sdk::artifact("users", LOCATION, &info);
        a.metadata.push(("kind".into(), "users".into()));
        artifacts.push(a);
    }
    for (i, s) in selected.iter().enumerate() {
        log::progress("databases", i as u64, Some(selected.len() as u64));
        // No --databases: the dump has no CREATE DATABASE / USE, so it can be restored
        // under another name; the character set and collation go in the metadata.
        let info = client("mariadb-dump", &p.conn(), pw.as_ref())
            .args([
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--skip-dump-date",
                "--default-character-set=utf8mb4",
                "--",
            ])
            .arg(&s.name)
            .stdout_to(&store, &object_key_for(&s.name), &zstd)?;
        log::info(
            "dumped database",
            &[("database", &s.name), ("bytes", &info.size.to_string())],
        );
        let mut a = sdk::artifact(&format!("database/{}", s.name), LOCATION, &info);
        for (k, v) in [
            ("kind", "database"),
            ("database", s.name.as_str()),
            ("charset", s.charset.as_str()),
            ("collation", s.collation.as_str()),
            ("format", "mariadb-dump-sql"),
        ] {
            a.metadata.push((k.into(), v.into()));
        }
        artifacts.push(a);
    }
    log::progress(
        "databases",
        selected.len() as u64,
        Some(selected.len() as u64),
    );
    Ok(ActionOutput {
        artifacts,
        outputs: vec![("databases".into(), names.join(","))],
    })
}

/// Restore the restore point's databases (and users) into the server the params reach.
pub fn restore(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
    let selected = sdk::select_databases(&req.input_artifacts, p.databases.as_deref())
        .map_err(sdk::invalid)?;
    let pw = sdk::optional_secret("password")?;
    let store = location::open(LOCATION)?;

    let users = req
        .input_artifacts
        .iter()
        .find(|a| sdk::meta(a, "kind") == Some("users"));
    if p.users
        && let Some(u) = users
    {
        // CREATE USER IF NOT EXISTS: existing users are kept as they are.
        client("mariadb", &p.conn(), pw.as_ref()).stdin_from(&store, &u.key)?;
        log::info("replayed users and grants", &[]);
    }
    let mut restored = Vec::new();
    let mut previous = Vec::new();
    for (i, (db, artifact)) in selected.iter().enumerate() {
        log::progress("databases", i as u64, Some(selected.len() as u64));
        let target = p.target_database.clone().unwrap_or_else(|| db.clone());
        let charset = sdk::meta(artifact, "charset").unwrap_or("utf8mb4");
        let collation = sdk::meta(artifact, "collation");
        if p.replace {
            let mut create = format!(
                "DROP DATABASE IF EXISTS {t}; CREATE DATABASE {t} CHARACTER SET {}",
                quote_ident(charset),
                t = quote_ident(&target)
            );
            if let Some(c) = collation {
                create.push_str(&format!(" COLLATE {}", quote_ident(c)));
            }
            client("mariadb", &p.conn(), pw.as_ref())
                .args(["-e", &create])
                .run(None, 64 << 10)?;
            client("mariadb", &p.conn(), pw.as_ref())
                .arg("--default-character-set=utf8mb4")
                .arg(format!("--database={target}"))
                .stdin_from(&store, &artifact.key)?;
        } else if let Some(prev) = staged::restore(
            &store,
            &artifact.key,
            &target,
            charset,
            collation,
            &p.conn(),
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
