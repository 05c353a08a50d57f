//! Quoting of database names for the places they go: a libpq conninfo, SQL, an object key.

/// `dbname='…'` for `--dbname`, so any name (with `=`, spaces, quotes, a leading `-`) is taken
/// literally rather than as a connection string.
pub fn conninfo_dbname(db: &str) -> String {
    let escaped = db.replace('\\', "\\\\").replace('\'', "\\'");
    format!("dbname='{escaped}'")
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
