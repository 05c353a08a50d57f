//! ActionSets in the catalog: their document (without the audit trail), the columns
//! recovery and retention query (state, workload, owner token, heartbeat), and the audit
//! trail in a table of its own. Status changes by a runner are compare-and-set on its owner
//! token: a process that lost its action (settled by another coffer) cannot write it again.

use super::Catalog;
use crate::model::{ActionSet, Kind, now_rfc3339};
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

/// The schema-2 additions.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let has = |col: &str| -> Result<bool> {
        let mut stmt =
            conn.prepare("SELECT 1 FROM pragma_table_info('objects') WHERE name = ?1")?;
        Ok(stmt.exists(params![col])?)
    };
    for (col, ty) in [
        ("state", "TEXT"),
        ("workload", "TEXT"),
        ("owner", "TEXT"),
        ("heartbeat", "INTEGER"),
    ] {
        if !has(col)? {
            conn.execute_batch(&format!("ALTER TABLE objects ADD COLUMN {col} {ty}"))?;
        }
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit (
            actionset TEXT NOT NULL,
            seq INTEGER NOT NULL,
            entry TEXT NOT NULL,
            PRIMARY KEY (actionset, seq)
         );
         CREATE INDEX IF NOT EXISTS objects_state ON objects (kind, state);
         UPDATE objects SET
            state = CASE WHEN json_extract(doc, '$.status.cleanupPending') THEN 'CleanupPending'
                         ELSE COALESCE(json_extract(doc, '$.status.phase'), 'Pending') END,
            workload = json_extract(doc, '$.spec.workload'),
            owner = json_extract(doc, '$.status.owner.token')
          WHERE kind = 'ActionSet';",
    )?;
    Ok(())
}

/// The state column: the phase, or `CleanupPending` for a failed backup whose leftovers
/// could not be removed yet.
fn state(a: &ActionSet) -> &'static str {
    if a.status.cleanup_pending {
        "CleanupPending"
    } else {
        a.status.phase.as_str()
    }
}

fn token(a: &ActionSet) -> Option<String> {
    a.status
        .owner
        .as_ref()
        .map(|o| o.token.clone())
        .filter(|t| !t.is_empty())
}

/// An update refused because the ActionSet is no longer owned by who wrote it.
#[derive(Debug, thiserror::Error)]
#[error(
    "ActionSet {0} is no longer run by this process (another coffer settled it as lost); its result is not recorded"
)]
pub struct NotOurs(pub String);

/// Which ActionSets to read.
pub enum ActionSetQuery<'a> {
    /// In one of these states (`Running`, `Pending`, `CleanupPending`, …).
    States(&'a [&'a str]),
}

/// How long finished ActionSets are kept: at most `max_age_days`, and at most `per_workload`
/// of each workload (the newest).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age_days: u32,
    pub per_workload: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_days: 30,
            per_workload: 1000,
        }
    }
}

impl Retention {
    /// `30d,1000`, `7d`, `,500`.
    pub fn parse(s: &str) -> Result<Retention> {
        let mut r = Retention::default();
        let (age, count) = s.split_once(',').unwrap_or((s, ""));
        let age = age.trim();
        if !age.is_empty() {
            r.max_age_days = age
                .strip_suffix('d')
                .and_then(|d| d.parse().ok())
                .with_context(|| {
                    format!("ActionSet retention {s:?}: write the age as days, e.g. 30d")
                })?;
        }
        let count = count.trim();
        if !count.is_empty() {
            r.per_workload = count
                .parse()
                .with_context(|| format!("ActionSet retention {s:?}: the count is a number"))?;
        }
        Ok(r)
    }
}

impl Catalog {
    /// Record a new ActionSet (an error if one has its name).
    pub fn insert_action_set(&self, a: &ActionSet) -> Result<()> {
        let (doc, audit) = split(a)?;
        let now = now_rfc3339();
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        let res = tx.execute(
            "INSERT INTO objects (kind, name, doc, created, updated, state, workload, owner, heartbeat)
             VALUES ('ActionSet', ?1, ?2, ?3, ?3, ?4, ?5, ?6, unixepoch())",
            params![a.name(), doc, now, state(a), a.spec.workload, token(a)],
        );
        match res {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                bail!("ActionSet {} already exists", a.name())
            }
            Err(e) => return Err(e).context("catalog: creating an ActionSet"),
        }
        write_audit(&tx, a.name(), &audit)?;
        tx.commit()?;
        Ok(())
    }

    /// An ActionSet with its audit trail.
    pub fn action_set(&self, name: &str) -> Result<Option<ActionSet>> {
        let Some(mut a) = self.get::<ActionSet>(Kind::ActionSet, name)? else {
            return Ok(None);
        };
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare("SELECT entry FROM audit WHERE actionset = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![name], |r| r.get::<_, String>(0))?;
        for row in rows {
            a.status.audit.push(
                serde_json::from_str(&row?)
                    .with_context(|| format!("catalog: an audit entry of {name} is unreadable"))?,
            );
        }
        Ok(Some(a))
    }

    /// Write `a` only if the ActionSet is still owned by `expected` (its owner token; `None`:
    /// no owner). The audit trail is replaced with `a`'s. `Err(NotOurs)` when it is not.
    pub fn update_action_set(&self, a: &ActionSet, expected: Option<&str>) -> Result<()> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        update_in(&tx, a, expected)?;
        tx.commit()?;
        Ok(())
    }

    /// A completed backup's record, in one transaction: its RestorePoint and its ActionSet
    /// (compare-and-set on the owner, like every runner's write). Either both are recorded
    /// or neither.
    pub fn record_backup(
        &self,
        rp: &crate::model::RestorePoint,
        a: &ActionSet,
        expected: Option<&str>,
    ) -> Result<()> {
        let rp_doc = serde_json::to_string(rp)?;
        let now = now_rfc3339();
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        update_in(&tx, a, expected)?;
        tx.execute(
            "INSERT INTO objects (kind, name, doc, created, updated) VALUES ('RestorePoint', ?1, ?2, ?3, ?3)",
            params![rp.name(), rp_doc, now],
        )
        .with_context(|| format!("catalog: recording RestorePoint {}", rp.name()))?;
        tx.commit()?;
        Ok(())
    }

    /// Whether `token` still owns the ActionSet (a heartbeat, too).
    pub fn owns(&self, name: &str, token: &str) -> Result<bool> {
        self.heartbeat(name, token)
    }

    /// The runner is alive: its heartbeat, if it still owns the ActionSet.
    pub fn heartbeat(&self, name: &str, token: &str) -> Result<bool> {
        let n = self.conn.lock().unwrap().execute(
            "UPDATE objects SET heartbeat = unixepoch() WHERE kind = 'ActionSet' AND name = ?1 AND owner = ?2",
            params![name, token],
        )?;
        Ok(n > 0)
    }

    /// Seconds since the ActionSet's last heartbeat.
    pub fn heartbeat_age(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT unixepoch() - heartbeat FROM objects WHERE kind = 'ActionSet' AND name = ?1",
                params![name],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
    }

    /// ActionSets matching `q` (documents only, no audit), oldest first: what recovery
    /// reads, without loading the rest.
    pub fn action_sets(&self, q: ActionSetQuery) -> Result<Vec<ActionSet>> {
        let ActionSetQuery::States(states) = q;
        let conn = self.conn.lock().unwrap();
        let marks = vec!["?"; states.len()].join(",");
        let mut stmt = conn.prepare(&format!(
            "SELECT name, doc FROM objects WHERE kind = 'ActionSet' AND state IN ({marks}) ORDER BY created, name"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(states.iter()), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        super::parse_docs(rows, "ActionSet")
    }

    /// Remove finished ActionSets past `r` (and their audit trails). Running ones and
    /// failed backups still waiting for cleanup are kept. Returns how many went.
    pub fn prune_action_sets(&self, r: Retention) -> Result<usize> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        let doomed: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT name FROM (
                    SELECT name, created, state,
                           ROW_NUMBER() OVER (PARTITION BY workload ORDER BY created DESC, name DESC) AS n
                    FROM objects WHERE kind = 'ActionSet')
                 WHERE state IN ('Completed', 'Failed')
                   AND (n > ?1 OR julianday('now') - julianday(created) > ?2)",
            )?;
            let rows = stmt.query_map(params![r.per_workload, r.max_age_days], |row| {
                row.get::<_, String>(0)
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for name in &doomed {
            tx.execute(
                "DELETE FROM objects WHERE kind = 'ActionSet' AND name = ?1",
                params![name],
            )?;
            tx.execute("DELETE FROM audit WHERE actionset = ?1", params![name])?;
        }
        tx.commit()?;
        Ok(doomed.len())
    }

    /// Schema 1 kept audit trails inside the documents.
    pub(super) fn move_audit_out_of_documents(&self) -> Result<()> {
        let names: Vec<String> = {
            let conn = self.conn.lock().unwrap();
            let mut stmt = conn.prepare(
                "SELECT name FROM objects WHERE kind = 'ActionSet' AND json_array_length(doc, '$.status.audit') > 0",
            )?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for name in names {
            if let Some(a) = self.get::<ActionSet>(Kind::ActionSet, &name)? {
                let expected = token(&a);
                self.update_action_set(&a, expected.as_deref())?;
            }
        }
        Ok(())
    }
}

/// The document (audit emptied) and the audit entries as JSON.
fn split(a: &ActionSet) -> Result<(String, Vec<String>)> {
    let audit = a
        .status
        .audit
        .iter()
        .map(serde_json::to_string)
        .collect::<serde_json::Result<Vec<_>>>()?;
    let mut doc = a.clone();
    doc.status.audit.clear();
    Ok((serde_json::to_string(&doc)?, audit))
}

/// Write `a` (and its audit trail) in `tx` if its owner token is still `expected`.
fn update_in(tx: &rusqlite::Transaction, a: &ActionSet, expected: Option<&str>) -> Result<()> {
    let (doc, audit) = split(a)?;
    let n = tx.execute(
        "UPDATE objects SET doc = ?2, updated = ?3, state = ?4, workload = ?5, owner = ?6,
            heartbeat = unixepoch()
         WHERE kind = 'ActionSet' AND name = ?1 AND owner IS ?7",
        params![
            a.name(),
            doc,
            now_rfc3339(),
            state(a),
            a.spec.workload,
            token(a),
            expected
        ],
    )?;
    if n == 0 {
        return Err(NotOurs(a.name().to_string()).into());
    }
    write_audit(tx, a.name(), &audit)
}

fn write_audit(tx: &rusqlite::Transaction, name: &str, audit: &[String]) -> Result<()> {
    tx.execute("DELETE FROM audit WHERE actionset = ?1", params![name])?;
    let mut stmt = tx.prepare("INSERT INTO audit (actionset, seq, entry) VALUES (?1, ?2, ?3)")?;
    for (i, e) in audit.iter().enumerate() {
        stmt.execute(params![name, i as i64, e])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionSetSpec, ActionSetStatus, AuditEntry, Owner, Phase};

    fn set(name: &str, workload: &str, phase: Phase, token: Option<&str>) -> ActionSet {
        let mut a = ActionSet::new(
            Kind::ActionSet,
            name.to_string(),
            ActionSetSpec {
                action: "backup".into(),
                workload: workload.into(),
                blueprint: String::new(),
                profile: String::new(),
                restore_point: None,
                params: serde_json::Value::Null,
                cancel: false,
                deadline: None,
                target_namespace: None,
            },
        );
        a.status = ActionSetStatus {
            phase,
            owner: token.map(|t| Owner {
                token: t.into(),
                ..Owner::default()
            }),
            ..Default::default()
        };
        a
    }

    #[test]
    fn updates_are_compare_and_set_on_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        let mut a = set("a", "w", Phase::Running, Some("t1"));
        a.status.audit.push(AuditEntry {
            at_ms: 1,
            capability: "exec.run".into(),
            target: "x".into(),
            args: String::new(),
            result: "ok".into(),
            duration_ms: 0,
            bytes: 0,
        });
        cat.insert_action_set(&a).unwrap();
        // The audit trail is not in the document, but comes back with it.
        let doc: serde_json::Value = cat.get(Kind::ActionSet, "a").unwrap().unwrap();
        assert!(doc["status"].get("audit").is_none());
        assert_eq!(cat.action_set("a").unwrap().unwrap().status.audit.len(), 1);
        // Another process settles it: the runner's next write is refused.
        let mut settled = a.clone();
        settled.status.phase = Phase::Failed;
        settled.status.owner = None;
        cat.update_action_set(&settled, Some("t1")).unwrap();
        let e = cat.update_action_set(&a, Some("t1")).unwrap_err();
        assert!(e.downcast_ref::<NotOurs>().is_some(), "{e}");
        assert!(!cat.heartbeat("a", "t1").unwrap());
        assert_eq!(
            cat.action_sets(ActionSetQuery::States(&["Running"]))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn retention_keeps_running_and_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        for i in 0..5 {
            cat.insert_action_set(&set(&format!("done-{i}"), "w", Phase::Completed, None))
                .unwrap();
        }
        cat.insert_action_set(&set("running", "w", Phase::Running, Some("t")))
            .unwrap();
        cat.insert_action_set(&set("other", "v", Phase::Failed, None))
            .unwrap();
        let n = cat
            .prune_action_sets(Retention {
                max_age_days: 30,
                per_workload: 2,
            })
            .unwrap();
        assert_eq!(n, 4);
        let left: Vec<String> = cat
            .list::<ActionSet>(Kind::ActionSet)
            .unwrap()
            .iter()
            .map(|a| a.name().to_string())
            .collect();
        assert!(left.contains(&"running".to_string()) && left.contains(&"other".to_string()));
        assert!(left.contains(&"done-4".to_string()), "{left:?}");
        assert_eq!(Retention::parse("7d,50").unwrap().per_workload, 50);
        assert!(Retention::parse("7w").is_err());
    }
}
