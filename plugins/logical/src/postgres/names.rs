//! Quoting of database names for the places they go: a libpq conninfo, SQL, an object key.

/// How to reach the server, each part left to libpq's defaults (the Workload's PGHOST,
/// PGPORT, PGUSER) when not set. A host or port given here must still match what the
/// Workload pins (the host's exec policy checks it) when the password is handed over.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
}

impl Conn {
    /// This server, as `user` when one is given.
    pub fn as_user(&self, user: Option<&str>) -> Conn {
        Conn {
            user: user.map(str::to_string).or_else(|| self.user.clone()),
            ..self.clone()
        }
    }

    /// A conninfo for `--dbname`: `dbname='…'` and the set parts, each quoted, so any name
    /// (with `=`, spaces, quotes, a leading `-`) is taken literally.
    pub fn dbname(&self, db: &str) -> String {
        let mut s = format!("dbname={}", conninfo_value(db));
        for (key, value) in [
            ("user", self.user.clone()),
            ("host", self.host.clone()),
            ("port", self.port.map(|p| p.to_string())),
        ] {
            if let Some(v) = value {
                s.push_str(&format!(" {key}={}", conninfo_value(&v)));
            }
        }
        s
    }
}

/// A conninfo value, single-quoted with `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// A SQL identifier, double-quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The object key of a database's dump: safe characters kept, the rest percent-encoded, so
/// a name can never form a path (`/`, `..`).
pub fn object_key_for(db: &str) -> String {
    let mut key = String::from("databases/");
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            key.push(b as char);
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
    key.push_str(".pgdump");
    key
}
