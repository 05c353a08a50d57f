//! Restoring a database without ever losing the one that is there. MariaDB cannot rename a
//! database, so: the dump is replayed into a new (staging) database first — everything that
//! can fail on this server (a definer that does not exist, a character set, a full disk)
//! fails there, and the staging database is dropped with the original untouched. Only then
//! the tables change places in one `RENAME TABLE` (all or nothing): the original's go to a
//! `__previous_` database, the staging ones take their names. Triggers cannot cross databases
//! in a RENAME, and views, routines and events belong to their database, so they are moved by
//! their definitions (`SHOW CREATE …`), re-created where they belong.

use super::Connection;
use super::client;
use super::names::{quote_ident, quote_string, unescape_batch};
use coffer_plugin_sdk::{self as sdk, Error, log, secrets};

/// MariaDB identifiers are at most 64 characters.
const MAX_NAME: usize = 64;
const MAX_OUTPUT: u32 = 16 << 20;

type Pw<'a> = Option<&'a secrets::Secret>;

/// Rows of a query, fields unescaped.
fn query(c: &Connection, pw: Pw, sql: &str) -> Result<Vec<Vec<String>>, Error> {
    let out = client("mariadb", c, pw)
        .args([
            "--default-character-set=utf8mb4",
            "--batch",
            "--skip-column-names",
            "-e",
            sql,
        ])
        .run(None, MAX_OUTPUT)?;
    let text = String::from_utf8(out)
        .map_err(|_| sdk::internal("mariadb printed something that is not UTF-8"))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(unescape_batch).collect())
        .collect())
}

/// Run `script` (statements, DELIMITER allowed) in database `db`.
fn script(c: &Connection, pw: Pw, db: &str, script: &str) -> Result<(), Error> {
    client("mariadb", c, pw)
        .arg("--default-character-set=utf8mb4")
        .arg(format!("--database={db}"))
        .run(Some(script.as_bytes()), 64 << 10)
        .map(|_| ())
}

fn exec(c: &Connection, pw: Pw, sql: &str) -> Result<(), Error> {
    client("mariadb", c, pw)
        .args(["-e", sql])
        .run(None, 64 << 10)
        .map(|_| ())
}

/// A database's objects and how to make them again.
#[derive(Default, Clone)]
struct Objects {
    tables: Vec<String>,
    /// (name, script that creates it in the current database).
    triggers: Vec<(String, String)>,
    views: Vec<(String, String)>,
    /// (kind: PROCEDURE | FUNCTION, name, script).
    routines: Vec<(String, String, String)>,
    events: Vec<(String, String)>,
}

/// The script re-creating one object: its SQL mode (and time zone) as recorded, its
/// statement between delimiters no routine body can contain.
fn create_script(sql_mode: &str, time_zone: Option<&str>, statement: &str) -> String {
    let mut s = format!("SET SESSION sql_mode = {};\n", quote_string(sql_mode));
    if let Some(tz) = time_zone {
        s.push_str(&format!("SET SESSION time_zone = {};\n", quote_string(tz)));
    }
    s.push_str("DELIMITER ;;coffer;;\n");
    s.push_str(statement);
    s.push_str("\n;;coffer;;\nDELIMITER ;\n");
    s
}

fn objects(c: &Connection, pw: Pw, db: &str) -> Result<Objects, Error> {
    let q = quote_string(db);
    let d = quote_ident(db);
    let names = |sql: String| -> Result<Vec<Vec<String>>, Error> { query(c, pw, &sql) };
    let mut o = Objects::default();
    for r in names(format!(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {q} AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
    ))? {
        o.tables.push(r[0].clone());
    }
    for r in names(format!(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {q} ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER"
    ))? {
        let row = query(
            c,
            pw,
            &format!("SHOW CREATE TRIGGER {d}.{}", quote_ident(&r[0])),
        )?;
        if let Some([_, mode, stmt, ..]) = row.first().map(Vec::as_slice) {
            o.triggers
                .push((r[0].clone(), create_script(mode, None, stmt)));
        }
    }
    for r in names(format!(
        "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {q} ORDER BY 1"
    ))? {
        let row = query(
            c,
            pw,
            &format!("SHOW CREATE VIEW {d}.{}", quote_ident(&r[0])),
        )?;
        if let Some([_, stmt, ..]) = row.first().map(Vec::as_slice) {
            o.views.push((r[0].clone(), create_script("", None, stmt)));
        }
    }
    for r in names(format!(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {q} ORDER BY 1, 2"
    ))? {
        let row = query(
            c,
            pw,
            &format!("SHOW CREATE {} {d}.{}", r[0], quote_ident(&r[1])),
        )?;
        if let Some([_, mode, stmt, ..]) = row.first().map(Vec::as_slice) {
            o.routines
                .push((r[0].clone(), r[1].clone(), create_script(mode, None, stmt)));
        }
    }
    for r in names(format!(
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {q} ORDER BY 1"
    ))? {
        let row = query(
            c,
            pw,
            &format!("SHOW CREATE EVENT {d}.{}", quote_ident(&r[0])),
        )?;
        if let Some([_, mode, tz, stmt, ..]) = row.first().map(Vec::as_slice) {
            o.events
                .push((r[0].clone(), create_script(mode, Some(tz), stmt)));
        }
    }
    Ok(o)
}

/// A definition's references to `from` made to `to` (views name their tables with the
/// database; the staging name is unique, so nothing else matches).
fn moved(script: &str, from: &str, to: &str) -> String {
    script.replace(
        &format!("{}.", quote_ident(from)),
        &format!("{}.", quote_ident(to)),
    )
}

/// Drop `o`'s triggers, views, routines and events from `db`.
fn drop_definitions(c: &Connection, pw: Pw, db: &str, o: &Objects) -> Result<(), Error> {
    let d = quote_ident(db);
    let mut sql = String::new();
    for (t, _) in &o.triggers {
        sql.push_str(&format!("DROP TRIGGER IF EXISTS {d}.{};", quote_ident(t)));
    }
    for (v, _) in &o.views {
        sql.push_str(&format!("DROP VIEW IF EXISTS {d}.{};", quote_ident(v)));
    }
    for (kind, r, _) in &o.routines {
        sql.push_str(&format!("DROP {kind} IF EXISTS {d}.{};", quote_ident(r)));
    }
    for (e, _) in &o.events {
        sql.push_str(&format!("DROP EVENT IF EXISTS {d}.{};", quote_ident(e)));
    }
    if sql.is_empty() {
        return Ok(());
    }
    exec(c, pw, &sql)
}

/// Re-create `o`'s definitions (written for `from`) in `to`; views that depend on other views
/// are retried until none is left or no progress is made.
fn create_definitions(
    c: &Connection,
    pw: Pw,
    from: &str,
    to: &str,
    o: &Objects,
) -> Result<(), Error> {
    for (_, s) in o.triggers.iter().chain(o.events.iter()) {
        script(c, pw, to, &moved(s, from, to))?;
    }
    for (_, _, s) in &o.routines {
        script(c, pw, to, &moved(s, from, to))?;
    }
    let mut pending: Vec<&(String, String)> = o.views.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut last = None;
        pending.retain(|(_, s)| match script(c, pw, to, &moved(s, from, to)) {
            Ok(()) => false,
            Err(e) => {
                last = Some(e);
                true
            }
        });
        if pending.len() == before {
            return Err(last.unwrap_or_else(|| sdk::internal("a view could not be created")));
        }
    }
    Ok(())
}

/// The database's character set and collation, if it exists.
fn charset(c: &Connection, pw: Pw, db: &str) -> Result<Option<(String, String)>, Error> {
    let rows = query(
        c,
        pw,
        &format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            quote_string(db)
        ),
    )?;
    Ok(rows.first().and_then(|r| match r.as_slice() {
        [cs, co] => Some((cs.clone(), co.clone())),
        _ => None,
    }))
}

fn create_database(
    c: &Connection,
    pw: Pw,
    db: &str,
    cs: &str,
    co: Option<&str>,
) -> Result<(), Error> {
    let mut sql = format!(
        "CREATE DATABASE {} CHARACTER SET {}",
        quote_ident(db),
        quote_ident(cs)
    );
    if let Some(co) = co {
        sql.push_str(&format!(" COLLATE {}", quote_ident(co)));
    }
    exec(c, pw, &sql)
}

fn drop_quietly(c: &Connection, pw: Pw, db: &str) {
    if let Err(e) = exec(
        c,
        pw,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(db)),
    ) {
        log::warn(
            "could not drop a staging database",
            &[("database", db), ("error", &sdk::error_text(&e))],
        );
    }
}

/// Restore the dump at `key` as database `target`. The name the original was kept under,
/// when there was one and `keep_previous` holds.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    store: &sdk::location::Store,
    key: &str,
    target: &str,
    cs: &str,
    co: Option<&str>,
    c: &Connection,
    pw: Pw,
    keep_previous: bool,
) -> Result<Option<String>, Error> {
    let n = sdk::StagingNames::for_target(target, MAX_NAME);
    // 1. Everything that can fail, in the staging database.
    create_database(c, pw, &n.staging, cs, co)?;
    let replayed = client("mariadb", c, pw)
        .arg("--default-character-set=utf8mb4")
        .arg(format!("--database={}", n.staging))
        .stdin_from(store, key);
    if let Err(e) = replayed {
        drop_quietly(c, pw, &n.staging);
        return Err(sdk::internal(format!(
            "replaying the dump into the new database {} failed, so {target} was left as it was: {}",
            n.staging,
            sdk::error_text(&e)
        )));
    }
    // 2. The swap.
    let existing = charset(c, pw, target)?;
    let staged = objects(c, pw, &n.staging)?;
    let original = match &existing {
        Some(_) => objects(c, pw, target)?,
        None => Objects::default(),
    };
    let step = |what: &str, e: Error| {
        sdk::internal(format!(
            "{what} failed ({}); {target} was left as it was",
            sdk::error_text(&e)
        ))
    };
    match &existing {
        Some((tcs, tco)) => create_database(c, pw, &n.previous, tcs, Some(tco))
            .map_err(|e| step("creating the database for the previous tables", e))?,
        None => create_database(c, pw, target, cs, co)
            .map_err(|e| step(&format!("creating database {target}"), e))?,
    }
    // Triggers cannot move between databases in a RENAME: drop them (their definitions are
    // in hand) and make them again where their tables land.
    drop_definitions(c, pw, &n.staging, &staged).map_err(|e| step("preparing the swap", e))?;
    let undo_original = |e: Error| {
        let _ = create_definitions(
            c,
            pw,
            target,
            target,
            &Objects {
                triggers: original.triggers.clone(),
                ..Objects::default()
            },
        );
        if existing.is_some() {
            drop_quietly(c, pw, &n.previous);
        }
        drop_quietly(c, pw, &n.staging);
        step("swapping the tables", e)
    };
    if let Err(e) = drop_definitions(
        c,
        pw,
        target,
        &Objects {
            triggers: original.triggers.clone(),
            ..Objects::default()
        },
    ) {
        return Err(undo_original(e));
    }
    let mut renames = Vec::new();
    for t in &original.tables {
        renames.push(format!(
            "{}.{} TO {}.{}",
            quote_ident(target),
            quote_ident(t),
            quote_ident(&n.previous),
            quote_ident(t)
        ));
    }
    for t in &staged.tables {
        renames.push(format!(
            "{}.{} TO {}.{}",
            quote_ident(&n.staging),
            quote_ident(t),
            quote_ident(target),
            quote_ident(t)
        ));
    }
    if !renames.is_empty()
        && let Err(e) = exec(c, pw, &format!("RENAME TABLE {}", renames.join(", ")))
    {
        return Err(undo_original(e));
    }
    // 3. The tables have changed places; the definitions follow. A failure here leaves the
    // restored tables in place and the previous ones kept: say so.
    let finish = (|| -> Result<(), Error> {
        drop_definitions(
            c,
            pw,
            target,
            &Objects {
                views: original.views.clone(),
                routines: original.routines.clone(),
                events: original.events.clone(),
                ..Objects::default()
            },
        )?;
        create_definitions(c, pw, &n.staging, target, &staged)?;
        if existing.is_some() {
            create_definitions(c, pw, target, &n.previous, &original)?;
        }
        Ok(())
    })();
    if let Err(e) = finish {
        return Err(sdk::internal(format!(
            "the restored tables took the place of {target}'s, but re-creating its triggers, views, routines and events failed: {}; the previous tables are kept in {}",
            sdk::error_text(&e),
            n.previous
        )));
    }
    drop_quietly(c, pw, &n.staging);
    n.settle_previous(target, existing.is_some(), keep_previous, |previous| {
        exec(c, pw, &format!("DROP DATABASE {}", quote_ident(previous)))
    })
}
