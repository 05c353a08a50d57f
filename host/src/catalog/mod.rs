//! The catalog: an embedded SQLite database in the state dir holding every resource as a
//! JSON document. WAL mode and a busy timeout let a running backup, a `coffer get` and a
//! daemon share it safely.

mod action_sets;

pub use action_sets::{ActionSetQuery, NotOurs, Retention};

use crate::model::{Kind, now_rfc3339};
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// 1: one table of documents. 2: ActionSets' state, workload, owner and heartbeat as
/// columns (recovery and retention query them without reading documents), and their audit
/// trails in a table of their own.
const SCHEMA_VERSION: i64 = 2;

pub struct Catalog {
    conn: Mutex<Connection>,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog> {
        // Readable by this user only; SQLite gives its -wal and -shm files the same mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating the catalog {}", path.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the catalog {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("catalog: enabling WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            bail!(
                "the catalog {} was written by a newer coffer (schema {version}, this one knows {SCHEMA_VERSION}); upgrade coffer",
                path.display()
            );
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                doc TEXT NOT NULL,
                created TEXT NOT NULL,
                updated TEXT NOT NULL,
                PRIMARY KEY (kind, name)
             );",
        )
        .context("catalog: creating tables")?;
        if version < 2 {
            action_sets::migrate(&conn).context("catalog: upgrading to schema 2")?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let catalog = Catalog {
            conn: Mutex::new(conn),
        };
        if version < 2 {
            catalog
                .move_audit_out_of_documents()
                .context("catalog: upgrading to schema 2")?;
        }
        Ok(catalog)
    }

    /// Create or replace.
    pub fn put<T: Serialize>(&self, kind: Kind, name: &str, obj: &T) -> Result<()> {
        let doc = serde_json::to_string(obj)?;
        let now = now_rfc3339();
        self.conn
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO objects (kind, name, doc, created, updated) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (kind, name) DO UPDATE SET doc = excluded.doc, updated = excluded.updated",
                params![kind.as_str(), name, doc, now],
            )
            .with_context(|| format!("catalog: writing {kind} {name}"))?;
        Ok(())
    }

    /// Create; an error if it exists.
    pub fn insert<T: Serialize>(&self, kind: Kind, name: &str, obj: &T) -> Result<()> {
        let doc = serde_json::to_string(obj)?;
        let now = now_rfc3339();
        let res = self.conn.lock().unwrap().execute(
            "INSERT INTO objects (kind, name, doc, created, updated) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![kind.as_str(), name, doc, now],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                bail!("{kind} {name} already exists")
            }
            Err(e) => Err(e).with_context(|| format!("catalog: creating {kind} {name}")),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<Option<T>> {
        let doc: Option<String> = self
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT doc FROM objects WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
                |r| r.get(0),
            )
            .optional()
            .with_context(|| format!("catalog: reading {kind} {name}"))?;
        doc.map(|d| {
            serde_json::from_str(&d)
                .with_context(|| format!("catalog: {kind} {name} is unreadable"))
        })
        .transpose()
    }

    /// All of a kind, oldest first.
    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt =
            conn.prepare("SELECT name, doc FROM objects WHERE kind = ?1 ORDER BY created, name")?;
        let rows = stmt.query_map(params![kind.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        parse_docs(rows, kind.as_str())
    }

    pub fn delete(&self, kind: Kind, name: &str) -> Result<bool> {
        let n = self
            .conn
            .lock()
            .unwrap()
            .execute(
                "DELETE FROM objects WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
            )
            .with_context(|| format!("catalog: deleting {kind} {name}"))?;
        Ok(n > 0)
    }
}

/// `(name, doc)` rows decoded; an undecodable one names itself.
fn parse_docs<T: DeserializeOwned>(
    rows: impl Iterator<Item = rusqlite::Result<(String, String)>>,
    kind: &str,
) -> Result<Vec<T>> {
    rows.map(|row| {
        let (name, doc) = row?;
        serde_json::from_str(&doc).with_context(|| format!("catalog: {kind} {name} is unreadable"))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        cat.insert(Kind::Profile, "a", &serde_json::json!({"x": 1}))
            .unwrap();
        assert!(
            cat.insert(Kind::Profile, "a", &serde_json::json!({}))
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        cat.put(Kind::Profile, "a", &serde_json::json!({"x": 2}))
            .unwrap();
        let v: serde_json::Value = cat.get(Kind::Profile, "a").unwrap().unwrap();
        assert_eq!(v["x"], 2);
        assert_eq!(
            cat.list::<serde_json::Value>(Kind::Profile).unwrap().len(),
            1
        );
        assert!(
            cat.get::<serde_json::Value>(Kind::Workload, "a")
                .unwrap()
                .is_none()
        );
        assert!(cat.delete(Kind::Profile, "a").unwrap());
        assert!(!cat.delete(Kind::Profile, "a").unwrap());
    }
}
