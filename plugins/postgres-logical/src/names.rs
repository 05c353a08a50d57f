//! Quoting of database names for the places they go: a libpq conninfo, SQL, an object key.

/// `dbname='…'` (and `user='…'` when one is set) for `--dbname`, so any name (with `=`, spaces, quotes, a leading `-`) is taken
/// literally rather than as a connection string.
pub fn conninfo_dbname(db: &str, user: Option<&str>) -> String {
    match user {
        Some(u) => format!("dbname={} user={}", conninfo_value(db), conninfo_value(u)),
        None => format!("dbname={}", conninfo_value(db)),
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
