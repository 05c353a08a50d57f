//! Database names in the places they go: SQL identifiers, object keys, batch output.

/// A MySQL identifier, backtick-quoted.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A SQL string literal (for information_schema queries).
pub fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The object key of a database's dump: safe characters kept, the rest percent-encoded, so
/// a name can never form a path.
pub fn object_key_for(db: &str) -> String {
    let mut key = String::from("databases/");
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            key.push(b as char);
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
    key.push_str(".sql");
    key
}

/// One field of `mariadb --batch` output, which escapes `\`, tab, newline and NUL.
pub fn unescape_batch(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
