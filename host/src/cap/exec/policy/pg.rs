//! PostgreSQL's client programs: psql, pg_dump, pg_dumpall, pg_restore.
//!
//! What they must never do for a plugin: write or read files (`-f`, `-o`, `-L`, pg_restore's
//! input file), run shell commands (psql's `\!`, `\copy … program`, `-o '|cmd'`), or send the
//! password to a server the Workload did not name (`-h`, `-p`, `host=` in a conninfo).
//! psql's meta-commands in a script fed on stdin are switched off by a `\restrict` line the
//! host writes first (psql 13.22, 14.19, 15.14, 16.10, 17.6 and later).

use super::Input;
use super::syntax::{Arg, Opt, Rule};

const FILES: &str = "it reads or writes files of the workload; the host streams input and output";
const SERVER: &str = "the server comes from the Workload's env (PGHOST, PGPORT)";

/// Options every libpq program shares.
pub static CONN: &[Opt] = &[
    Opt::new("dbname", Some('d'), Arg::Required, Rule::Check(conninfo)),
    Opt::new("host", Some('h'), Arg::Required, Rule::Pin("PGHOST")),
    Opt::new("port", Some('p'), Arg::Required, Rule::Pin("PGPORT")),
    Opt::new(
        "username",
        Some('U'),
        Arg::Required,
        Rule::Check(plain_name),
    ),
    Opt::new("no-password", Some('w'), Arg::No, Rule::Allow),
    Opt::new(
        "password",
        Some('W'),
        Arg::No,
        Rule::Deny("it prompts on a terminal"),
    ),
    Opt::new("version", Some('V'), Arg::No, Rule::Allow),
    Opt::new("help", Some('?'), Arg::Optional, Rule::Allow),
];

/// psql variables a plugin may set with `-v`; the rest (ECHO shows the host's `\restrict`
/// key, PROMPT runs backticks, HISTFILE writes a file) are the host's.
const PSQL_VARIABLES: &[&str] = &[
    "ON_ERROR_STOP",
    "ON_ERROR_ROLLBACK",
    "AUTOCOMMIT",
    "VERBOSITY",
    "SHOW_CONTEXT",
    "FETCH_COUNT",
    "QUIET",
];

pub static PSQL: &[Opt] = &[
    Opt::new(
        "command",
        Some('c'),
        Arg::Required,
        Rule::Check(psql_command),
    ),
    Opt::new("file", Some('f'), Arg::Required, Rule::Deny(FILES)),
    Opt::new(
        "output",
        Some('o'),
        Arg::Required,
        Rule::Deny("it writes a file or runs a shell command (`|cmd`)"),
    ),
    Opt::new("log-file", Some('L'), Arg::Required, Rule::Deny(FILES)),
    Opt::new(
        "pset",
        Some('P'),
        Arg::Required,
        Rule::Deny("printing options can run a pager"),
    ),
    Opt::new("set", Some('v'), Arg::Required, Rule::Check(psql_variable)),
    Opt::new("variable", None, Arg::Required, Rule::Check(psql_variable)),
    Opt::new(
        "echo-all",
        Some('a'),
        Arg::No,
        Rule::Deny("it echoes the host's own input lines"),
    ),
    Opt::new("echo-errors", Some('b'), Arg::No, Rule::Allow),
    Opt::new("echo-queries", Some('e'), Arg::No, Rule::Allow),
    Opt::new("echo-hidden", Some('E'), Arg::No, Rule::Allow),
    Opt::new("no-psqlrc", Some('X'), Arg::No, Rule::Allow),
    Opt::new("single-transaction", Some('1'), Arg::No, Rule::Allow),
    Opt::new("list", Some('l'), Arg::No, Rule::Allow),
    Opt::new("no-readline", Some('n'), Arg::No, Rule::Allow),
    Opt::new("quiet", Some('q'), Arg::No, Rule::Allow),
    Opt::new(
        "single-step",
        Some('s'),
        Arg::No,
        Rule::Deny("it prompts on a terminal"),
    ),
    Opt::new("single-line", Some('S'), Arg::No, Rule::Allow),
    Opt::new("no-align", Some('A'), Arg::No, Rule::Allow),
    Opt::new("csv", None, Arg::No, Rule::Allow),
    Opt::new("field-separator", Some('F'), Arg::Required, Rule::Allow),
    Opt::new("field-separator-zero", Some('z'), Arg::No, Rule::Allow),
    Opt::new("record-separator", Some('R'), Arg::Required, Rule::Allow),
    Opt::new("record-separator-zero", Some('0'), Arg::No, Rule::Allow),
    Opt::new("html", Some('H'), Arg::No, Rule::Allow),
    Opt::new("table-attr", Some('T'), Arg::Required, Rule::Allow),
    Opt::new("tuples-only", Some('t'), Arg::No, Rule::Allow),
    Opt::new("expanded", Some('x'), Arg::No, Rule::Allow),
];

/// pg_dump's and pg_dumpall's output shaping; the output itself goes to stdout.
pub static DUMP: &[Opt] = &[
    Opt::new("file", Some('f'), Arg::Required, Rule::Deny(FILES)),
    Opt::new("filter", None, Arg::Required, Rule::Deny(FILES)),
    Opt::new("data-only", Some('a'), Arg::No, Rule::Allow),
    Opt::new("clean", Some('c'), Arg::No, Rule::Allow),
    Opt::new("encoding", Some('E'), Arg::Required, Rule::Allow),
    Opt::new("no-owner", Some('O'), Arg::No, Rule::Allow),
    Opt::new("schema-only", Some('s'), Arg::No, Rule::Allow),
    Opt::new("superuser", Some('S'), Arg::Required, Rule::Allow),
    Opt::new("no-privileges", Some('x'), Arg::No, Rule::Allow),
    Opt::new("verbose", Some('v'), Arg::No, Rule::Allow),
    Opt::new("lock-wait-timeout", None, Arg::Required, Rule::Allow),
    Opt::new("column-inserts", None, Arg::No, Rule::Allow),
    Opt::new("inserts", None, Arg::No, Rule::Allow),
    Opt::new("rows-per-insert", None, Arg::Required, Rule::Allow),
    Opt::new("disable-dollar-quoting", None, Arg::No, Rule::Allow),
    Opt::new("disable-triggers", None, Arg::No, Rule::Allow),
    Opt::new("extra-float-digits", None, Arg::Required, Rule::Allow),
    Opt::new("if-exists", None, Arg::No, Rule::Allow),
    Opt::new("load-via-partition-root", None, Arg::No, Rule::Allow),
    Opt::new("no-comments", None, Arg::No, Rule::Allow),
    Opt::new("no-publications", None, Arg::No, Rule::Allow),
    Opt::new("no-security-labels", None, Arg::No, Rule::Allow),
    Opt::new("no-subscriptions", None, Arg::No, Rule::Allow),
    Opt::new("no-table-access-method", None, Arg::No, Rule::Allow),
    Opt::new("no-tablespaces", None, Arg::No, Rule::Allow),
    Opt::new("no-toast-compression", None, Arg::No, Rule::Allow),
    Opt::new("no-unlogged-table-data", None, Arg::No, Rule::Allow),
    Opt::new("no-sync", None, Arg::No, Rule::Allow),
    Opt::new("on-conflict-do-nothing", None, Arg::No, Rule::Allow),
    Opt::new("quote-all-identifiers", None, Arg::No, Rule::Allow),
    Opt::new("use-set-session-authorization", None, Arg::No, Rule::Allow),
    Opt::new("binary-upgrade", None, Arg::No, Rule::Allow),
    Opt::new("role", None, Arg::Required, Rule::Check(plain_name)),
];

pub static PG_DUMP: &[Opt] = &[
    Opt::new("format", Some('F'), Arg::Required, Rule::Check(dump_format)),
    Opt::new(
        "jobs",
        Some('j'),
        Arg::Required,
        Rule::Deny("parallel dumps write a directory"),
    ),
    Opt::new("compress", Some('Z'), Arg::Required, Rule::Allow),
    Opt::new("blobs", Some('b'), Arg::No, Rule::Allow),
    Opt::new("large-objects", None, Arg::No, Rule::Allow),
    Opt::new("no-blobs", Some('B'), Arg::No, Rule::Allow),
    Opt::new("no-large-objects", None, Arg::No, Rule::Allow),
    Opt::new("create", Some('C'), Arg::No, Rule::Allow),
    Opt::new("extension", Some('e'), Arg::Required, Rule::Allow),
    Opt::new("schema", Some('n'), Arg::Required, Rule::Allow),
    Opt::new("exclude-schema", Some('N'), Arg::Required, Rule::Allow),
    Opt::new("table", Some('t'), Arg::Required, Rule::Allow),
    Opt::new("exclude-table", Some('T'), Arg::Required, Rule::Allow),
    Opt::new("exclude-table-data", None, Arg::Required, Rule::Allow),
    Opt::new("include-foreign-data", None, Arg::Required, Rule::Allow),
    Opt::new("enable-row-security", None, Arg::No, Rule::Allow),
    Opt::new("section", None, Arg::Required, Rule::Allow),
    Opt::new("serializable-deferrable", None, Arg::No, Rule::Allow),
    Opt::new("snapshot", None, Arg::Required, Rule::Allow),
    Opt::new("strict-names", None, Arg::No, Rule::Allow),
];

pub static PG_DUMPALL: &[Opt] = &[
    // -l names the database to connect to, like -d.
    Opt::new("database", Some('l'), Arg::Required, Rule::Check(conninfo)),
    Opt::new("globals-only", Some('g'), Arg::No, Rule::Allow),
    Opt::new("roles-only", Some('r'), Arg::No, Rule::Allow),
    Opt::new("tablespaces-only", Some('t'), Arg::No, Rule::Allow),
    Opt::new("no-role-passwords", None, Arg::No, Rule::Allow),
    Opt::new("exclude-database", None, Arg::Required, Rule::Allow),
];

pub static PG_RESTORE: &[Opt] = &[
    Opt::new("file", Some('f'), Arg::Required, Rule::Deny(FILES)),
    Opt::new("use-list", Some('L'), Arg::Required, Rule::Deny(FILES)),
    Opt::new("filter", None, Arg::Required, Rule::Deny(FILES)),
    Opt::new("format", Some('F'), Arg::Required, Rule::Check(dump_format)),
    Opt::new("list", Some('l'), Arg::No, Rule::Allow),
    Opt::new(
        "jobs",
        Some('j'),
        Arg::Required,
        Rule::Deny("parallel restores read a file"),
    ),
    Opt::new("data-only", Some('a'), Arg::No, Rule::Allow),
    Opt::new("clean", Some('c'), Arg::No, Rule::Allow),
    Opt::new("create", Some('C'), Arg::No, Rule::Allow),
    Opt::new("exit-on-error", Some('e'), Arg::No, Rule::Allow),
    Opt::new("index", Some('I'), Arg::Required, Rule::Allow),
    Opt::new("function", Some('P'), Arg::Required, Rule::Allow),
    Opt::new("schema", Some('n'), Arg::Required, Rule::Allow),
    Opt::new("exclude-schema", Some('N'), Arg::Required, Rule::Allow),
    Opt::new("no-owner", Some('O'), Arg::No, Rule::Allow),
    Opt::new("schema-only", Some('s'), Arg::No, Rule::Allow),
    Opt::new("superuser", Some('S'), Arg::Required, Rule::Allow),
    Opt::new("table", Some('t'), Arg::Required, Rule::Allow),
    Opt::new("trigger", Some('T'), Arg::Required, Rule::Allow),
    Opt::new("verbose", Some('v'), Arg::No, Rule::Allow),
    Opt::new("no-privileges", Some('x'), Arg::No, Rule::Allow),
    Opt::new("single-transaction", Some('1'), Arg::No, Rule::Allow),
    Opt::new("disable-triggers", None, Arg::No, Rule::Allow),
    Opt::new("enable-row-security", None, Arg::No, Rule::Allow),
    Opt::new("if-exists", None, Arg::No, Rule::Allow),
    Opt::new("no-comments", None, Arg::No, Rule::Allow),
    Opt::new("no-data-for-failed-tables", None, Arg::No, Rule::Allow),
    Opt::new("no-publications", None, Arg::No, Rule::Allow),
    Opt::new("no-security-labels", None, Arg::No, Rule::Allow),
    Opt::new("no-subscriptions", None, Arg::No, Rule::Allow),
    Opt::new("no-table-access-method", None, Arg::No, Rule::Allow),
    Opt::new("no-tablespaces", None, Arg::No, Rule::Allow),
    Opt::new("section", None, Arg::Required, Rule::Allow),
    Opt::new("strict-names", None, Arg::No, Rule::Allow),
    Opt::new("use-set-session-authorization", None, Arg::No, Rule::Allow),
    Opt::new("role", None, Arg::Required, Rule::Check(plain_name)),
];

/// psql's positionals are a database and a user; pg_dump's a database; pg_restore reads
/// its archive from stdin only; pg_dumpall has none.
pub fn positionals(program: &str, words: &[String], input: &Input) -> Result<(), String> {
    match program {
        "psql" if words.len() <= 2 => {
            if let Some(db) = words.first() {
                conninfo(db, input)?;
            }
            if let Some(user) = words.get(1) {
                plain_name(user, input)?;
            }
            Ok(())
        }
        "pg_dump" if words.len() <= 1 => words.iter().try_for_each(|db| conninfo(db, input)),
        "pg_restore" if !words.is_empty() => Err(format!(
            "pg_restore reads its archive from stdin here; an input file ({}) would be read from the workload's disk",
            words[0]
        )),
        "pg_restore" | "pg_dumpall" if words.is_empty() => Ok(()),
        _ => Err(format!(
            "{program} takes no arguments besides its options here (got {})",
            words.join(" ")
        )),
    }
}

/// The line psql reads before a plugin's script: from then on it refuses every
/// meta-command (`\!`, `\copy`, `\o`, `\i`, …) but `\unrestrict` with this key, which the
/// plugin never sees.
pub fn restrict_preamble(key: &str) -> Vec<u8> {
    format!("\\restrict {key}\n").into_bytes()
}

/// Whether `psql --version` output names a psql that knows `\restrict` (13.22, 14.19,
/// 15.14, 16.10, 17.6, 18 and later); older ones would run the meta-commands it should stop.
pub fn psql_restricts(version_output: &str) -> Result<(), String> {
    let v = version_output
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_default();
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let ok = match major {
        0..=12 => false,
        13 => minor >= 22,
        14 => minor >= 19,
        15 => minor >= 14,
        16 => minor >= 10,
        17 => minor >= 6,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "psql {v} cannot switch off its meta-commands (\\restrict came in 13.22, 14.19, 15.14, 16.10 and 17.6), so a script on its stdin could run shell commands; upgrade the workload's psql"
        ))
    }
}

fn psql_command(sql: &str, _: &Input) -> Result<(), String> {
    // psql runs a `-c` that starts with a backslash as a meta-command; anything else goes
    // to the server as it is (leading blanks included).
    if sql.starts_with('\\') {
        return Err("a -c that starts with a backslash is a psql meta-command (`\\!` runs a shell); send SQL".into());
    }
    Ok(())
}

fn psql_variable(v: &str, _: &Input) -> Result<(), String> {
    let name = v.split_once('=').map_or(v, |(n, _)| n);
    if PSQL_VARIABLES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "psql variable {name:?}: a plugin may set {}",
            PSQL_VARIABLES.join(", ")
        ))
    }
}

fn dump_format(v: &str, _: &Input) -> Result<(), String> {
    match v {
        "c" | "custom" | "p" | "plain" | "t" | "tar" => Ok(()),
        _ => Err(format!(
            "format {v:?}: the directory format writes files; use custom, plain or tar on stdout"
        )),
    }
}

fn plain_name(v: &str, _: &Input) -> Result<(), String> {
    if v.contains('=') || v.starts_with('-') || v.contains(char::is_control) {
        return Err(format!("{v:?} is not a plain name"));
    }
    Ok(())
}

/// libpq connection keywords a plugin may give; host and port must match the Workload's pin
/// (see `super::pin`); the rest read files (sslkey, passfile, service) or change where the
/// password goes.
const CONNINFO_KEYS: &[&str] = &[
    "dbname",
    "user",
    "application_name",
    "connect_timeout",
    "client_encoding",
];

/// A database name, or a `key=value` connection string with only harmless keys. A URI is
/// refused (it can name any server).
pub fn conninfo(v: &str, input: &Input) -> Result<(), String> {
    if v.starts_with("postgresql://") || v.starts_with("postgres://") {
        return Err(format!(
            "connection URI {v:?}: {SERVER}; give a database name or dbname='…'"
        ));
    }
    if !v.contains('=') {
        return Ok(());
    }
    for (key, value) in parse_conninfo(v)? {
        match key.as_str() {
            k if CONNINFO_KEYS.contains(&k) => {}
            "host" | "hostaddr" => super::pin("PGHOST", &value, input)
                .map_err(|e| format!("connection string {key}={value}: {e}"))?,
            "port" => super::pin("PGPORT", &value, input)
                .map_err(|e| format!("connection string port={value}: {e}"))?,
            other => {
                return Err(format!(
                    "connection keyword {other:?} is not allowed here (allowed: {}); {SERVER}",
                    CONNINFO_KEYS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// libpq's `key = value` syntax: values bare or single-quoted, `\` escaping in both.
fn parse_conninfo(s: &str) -> Result<Vec<(String, String)>, String> {
    let bad = |why: &str| format!("connection string {s:?}: {why}");
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != '=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key: String = b[start..i].iter().collect();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != '=' || key.is_empty() {
            return Err(bad("expected key=value"));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if i < b.len() && b[i] == '\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(bad("unterminated quoted value")),
                    Some('\\') => {
                        value.push(*b.get(i + 1).ok_or_else(|| bad("trailing backslash"))?);
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == '\\' {
                    i += 1;
                    value.push(*b.get(i).ok_or_else(|| bad("trailing backslash"))?);
                } else {
                    value.push(b[i]);
                }
                i += 1;
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_psql_that_restricts_takes_a_script() {
        assert!(psql_restricts("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").is_ok());
        assert!(psql_restricts("psql (PostgreSQL) 18.1").is_ok());
        assert!(psql_restricts("psql (PostgreSQL) 16.9").is_err());
        assert!(psql_restricts("psql (PostgreSQL) 12.22").is_err());
        assert!(psql_restricts("garbage").is_err());
    }

    #[test]
    fn conninfo_is_parsed_like_libpq() {
        assert_eq!(
            parse_conninfo(r"dbname='o\'brien db' user = x").unwrap(),
            [
                ("dbname".to_string(), "o'brien db".to_string()),
                ("user".to_string(), "x".to_string())
            ]
        );
        assert!(parse_conninfo("dbname='x").is_err());
        assert!(parse_conninfo("dbname").is_err());
        let env = Default::default();
        let input = Input::test(&env, false);
        assert!(conninfo("shop", &input).is_ok());
        assert!(conninfo("dbname='a=b host=evil'", &input).is_ok());
        assert!(conninfo("dbname=x sslkey=/etc/shadow", &input).is_err());
        assert!(conninfo("dbname=x passfile=/root/.pgpass", &input).is_err());
        assert!(conninfo("postgresql://evil/x", &input).is_err());
        // An unpinned host is fine without a secret, refused with one.
        assert!(conninfo("dbname=x host=db", &input).is_ok());
        let with_secret = Input::test(&env, true);
        assert!(conninfo("dbname=x host=evil", &with_secret).is_err());
    }
}
