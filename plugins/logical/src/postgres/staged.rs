//! Restoring a database without ever losing the one that is there: the archive goes into a
//! new (staging) database, and only when that succeeded are the two swapped, by renaming
//! both in one transaction. A failure at any step before the swap drops the staging
//! database and leaves the original as it was; after it, the original is kept under a
//! `__previous_` name (unless `keepPrevious: false`).

use super::names::{Conn, quote_ident};
use super::psql_command;
use coffer_plugin_sdk::{self as sdk, Artifact, Cmd, Error, location, log, secrets};

/// PostgreSQL identifiers are at most 63 bytes.
const MAX_NAME: usize = 63;
/// Attempts at the swap: other sessions are ended first, and a new one can slip in.
const SWAP_ATTEMPTS: u32 = 10;

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `CREATE DATABASE` for the staging database: the encoding, locale and owner the backup
/// recorded (older backups: the server's defaults).
fn create_sql(staging: &str, a: &Artifact) -> String {
    let mut sql = format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_ident(staging)
    );
    for (key, clause) in [
        ("encoding", "ENCODING"),
        ("collate", "LC_COLLATE"),
        ("ctype", "LC_CTYPE"),
    ] {
        if let Some(v) = sdk::meta(a, key) {
            sql.push_str(&format!(" {clause} {}", quote_literal(v)));
        }
    }
    sql
}

/// Restore `artifact` as database `target`; `maint` is where to connect for the DDL.
pub fn restore(
    store: &location::Store,
    artifact: &Artifact,
    target: &str,
    (maint, conn): (&str, &Conn),
    pw: Option<&secrets::Secret>,
    keep_previous: bool,
) -> Result<Option<String>, Error> {
    let n = sdk::StagingNames::for_target(target, MAX_NAME);
    psql_command(maint, pw, &create_sql(&n.staging, artifact))?;
    let loaded = (|| -> Result<(), Error> {
        Cmd::new(["pg_restore", "--exit-on-error", "--no-password"])
            .arg(format!("--dbname={}", conn.dbname(&n.staging)))
            .secret_env("PGPASSWORD", pw)
            .stdin_from(store, &artifact.key)?;
        if let Some(owner) = sdk::meta(artifact, "owner") {
            psql_command(
                maint,
                pw,
                &format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    quote_ident(&n.staging),
                    quote_ident(owner)
                ),
            )?;
        }
        Ok(())
    })();
    if let Err(e) = loaded {
        drop_quietly(maint, pw, &n.staging);
        return Err(sdk::internal(format!(
            "restoring into the new database {} failed, so {target} was left as it was: {}",
            n.staging,
            sdk::error_text(&e)
        )));
    }
    let existed = swap(maint, pw, target, &n)?;
    n.settle_previous(target, existed, keep_previous, |previous| {
        psql_command(
            maint,
            pw,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(previous)
            ),
        )
    })
}

/// Rename `target` to the previous name and the staging database to `target`, in one
/// transaction (both or neither). Whether `target` existed.
fn swap(
    maint: &str,
    pw: Option<&secrets::Secret>,
    target: &str,
    n: &sdk::StagingNames,
) -> Result<bool, Error> {
    let exists = psql_query(
        maint,
        pw,
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            quote_literal(target)
        ),
    )?
    .trim()
        == "1";
    let renames = if exists {
        format!(
            "ALTER DATABASE {t} RENAME TO {p}; ALTER DATABASE {s} RENAME TO {t};",
            t = quote_ident(target),
            p = quote_ident(&n.previous),
            s = quote_ident(&n.staging)
        )
    } else {
        format!(
            "ALTER DATABASE {} RENAME TO {};",
            quote_ident(&n.staging),
            quote_ident(target)
        )
    };
    let mut last = None;
    for attempt in 0..SWAP_ATTEMPTS {
        if exists {
            // A database cannot be renamed while anyone is connected to it.
            let _ = psql_query(
                maint,
                pw,
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid(); SELECT pg_sleep({})",
                    quote_literal(target),
                    0.05 * f64::from(attempt + 1)
                ),
            );
        }
        match psql_command(maint, pw, &renames) {
            Ok(()) => return Ok(exists),
            Err(e) => last = Some(e),
        }
    }
    drop_quietly(maint, pw, &n.staging);
    Err(sdk::internal(format!(
        "the restored database could not take the place of {target} ({}); {target} was left as it was",
        last.map(|e| sdk::error_text(&e)).unwrap_or_default()
    )))
}

fn drop_quietly(maint: &str, pw: Option<&secrets::Secret>, db: &str) {
    if let Err(e) = psql_command(
        maint,
        pw,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db)),
    ) {
        log::warn(
            "could not drop the staging database",
            &[("database", db), ("error", &sdk::error_text(&e))],
        );
    }
}

/// A one-value query.
fn psql_query(maint: &str, pw: Option<&secrets::Secret>, sql: &str) -> Result<String, Error> {
    let out = Cmd::new([
        "psql",
        "-X",
        "--no-password",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .arg(format!("--dbname={maint}"))
    .args(["-c", sql])
    .secret_env("PGPASSWORD", pw)
    .run(None, 64 << 10)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
