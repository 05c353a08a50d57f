//! redis-cli: an RDB to stdout, the server's health, a few read-only commands.
//!
//! What it must never do for a plugin: write a file (`--rdb FILE`, `--functions-rdb`), read
//! one for the server (`--eval FILE`), run cluster maintenance (`--cluster`), or make the
//! server write files (`CONFIG SET dir` + `SAVE`): commands are a read-only list.

use super::syntax::{Arg, Opt, Rule};

pub static REDIS_CLI: &[Opt] = &[
    Opt::new("host", Some('h'), Arg::Required, Rule::Pin("REDIS_HOST")),
    Opt::new("port", Some('p'), Arg::Required, Rule::Pin("REDIS_PORT")),
    Opt::new(
        "socket",
        Some('s'),
        Arg::Required,
        Rule::Pin("REDIS_SOCKET"),
    ),
    Opt::new("user", None, Arg::Required, Rule::Allow),
    Opt::new("db", Some('n'), Arg::Required, Rule::Allow),
    Opt::new("no-auth-warning", None, Arg::No, Rule::Allow),
    Opt::new("raw", None, Arg::No, Rule::Allow),
    Opt::new("no-raw", None, Arg::No, Rule::Allow),
    Opt::new("csv", None, Arg::No, Rule::Allow),
    Opt::new("tls", None, Arg::No, Rule::Allow),
    Opt::new("sni", None, Arg::Required, Rule::Allow),
    Opt::new("cacert", None, Arg::Required, Rule::Allow),
    Opt::new("cert", None, Arg::Required, Rule::Allow),
    Opt::new("key", None, Arg::Required, Rule::Allow),
    Opt::new("rdb", None, Arg::Required, Rule::Check(stdout_only)),
    Opt::new(
        "pass",
        Some('a'),
        Arg::Required,
        Rule::Deny("the password comes from the Workload's secret (REDISCLI_AUTH)"),
    ),
    Opt::new(
        "uri",
        Some('u'),
        Arg::Required,
        Rule::Deny("the server comes from -h/-p (pinned by REDIS_HOST/REDIS_PORT)"),
    ),
    Opt::new(
        "functions-rdb",
        None,
        Arg::Required,
        Rule::Deny("it writes a file"),
    ),
    Opt::new(
        "eval",
        None,
        Arg::Required,
        Rule::Deny("it reads a file of the workload and sends it to the server"),
    ),
    Opt::new(
        "cluster",
        None,
        Arg::Required,
        Rule::Deny("cluster maintenance (and its backup writes files)"),
    ),
];

/// Commands a plugin may send: none of them changes the server or its files.
const COMMANDS: &[&str] = &[
    "PING",
    "INFO",
    "DBSIZE",
    "LASTSAVE",
    "ROLE",
    "TIME",
    "CONFIG GET",
];

fn stdout_only(v: &str, _: &super::Input) -> Result<(), String> {
    if v == "-" {
        Ok(())
    } else {
        Err(format!(
            "--rdb {v}: only `--rdb -` (to stdout); a file would be written on the workload's disk"
        ))
    }
}

pub fn positionals(words: &[String]) -> Result<(), String> {
    if words.is_empty() {
        return Ok(());
    }
    let first = words[0].to_ascii_uppercase();
    let two = words
        .get(1)
        .map(|w| format!("{first} {}", w.to_ascii_uppercase()));
    let allowed =
        COMMANDS.contains(&first.as_str()) || two.as_deref().is_some_and(|t| COMMANDS.contains(&t));
    if allowed {
        return Ok(());
    }
    Err(format!(
        "redis-cli command {:?} is not allowed here (allowed: {})",
        words.join(" "),
        COMMANDS.join(", ")
    ))
}
