//! MariaDB's (and MySQL's) client programs: mariadb / mysql and mariadb-dump / mysqldump.
//!
//! What they must never do for a plugin: read option files (`--defaults-file`, and
//! `--no-defaults` must come first so `~/.my.cnf` cannot add `pager` or `plugin-dir`), load
//! plugins (`--plugin-dir`, `--default-auth`), write files (`--tee`, `--result-file`,
//! `--tab`), run shell commands (`system`, `\!`, `pager` in a script: the host adds
//! `--sandbox`), read local files for the server (`LOAD DATA LOCAL`: `--local-infile=0`), or
//! send the password to a server the Workload did not name.

use super::syntax::{Arg, Opt, Rule};

const FILES: &str = "it writes files of the workload; output goes to stdout";
const PLUGINS: &str = "it loads a shared library";

/// Shared by both programs.
pub static CONN: &[Opt] = &[
    Opt::new("host", Some('h'), Arg::Required, Rule::Pin("MYSQL_HOST")),
    Opt::new(
        "port",
        Some('P'),
        Arg::Required,
        Rule::Pin("MYSQL_TCP_PORT"),
    ),
    Opt::new(
        "socket",
        Some('S'),
        Arg::Required,
        Rule::Pin("MYSQL_UNIX_PORT"),
    ),
    Opt::new("protocol", None, Arg::Required, Rule::Allow),
    Opt::new("user", Some('u'), Arg::Required, Rule::Allow),
    Opt::new(
        "password",
        Some('p'),
        Arg::Optional,
        Rule::Deny("the password comes from the Workload's secret (MYSQL_PWD)"),
    ),
    Opt::new("default-character-set", None, Arg::Required, Rule::Allow),
    Opt::new("plugin-dir", None, Arg::Required, Rule::Deny(PLUGINS)),
    Opt::new("default-auth", None, Arg::Required, Rule::Deny(PLUGINS)),
    Opt::new("ssl", None, Arg::No, Rule::Allow),
    Opt::new("ssl-verify-server-cert", None, Arg::No, Rule::Allow),
    Opt::new("ssl-ca", None, Arg::Required, Rule::Allow),
    Opt::new("ssl-cert", None, Arg::Required, Rule::Allow),
    Opt::new("ssl-key", None, Arg::Required, Rule::Allow),
    Opt::new("connect-timeout", None, Arg::Required, Rule::Allow),
    Opt::new("compress", Some('C'), Arg::No, Rule::Allow),
    Opt::new("verbose", Some('v'), Arg::No, Rule::Allow),
    Opt::new("version", Some('V'), Arg::No, Rule::Allow),
    Opt::new("help", Some('?'), Arg::No, Rule::Allow),
];

pub static CLIENT: &[Opt] = &[
    Opt::new("execute", Some('e'), Arg::Required, Rule::Allow),
    Opt::new("database", Some('D'), Arg::Required, Rule::Allow),
    Opt::new("batch", Some('B'), Arg::No, Rule::Allow),
    Opt::new("skip-column-names", Some('N'), Arg::No, Rule::Allow),
    // Flush after each statement: a held session (a lock taken, then a snapshot cut) reads
    // each answer as it comes.
    Opt::new("unbuffered", Some('n'), Arg::No, Rule::Allow),
    Opt::new("raw", Some('r'), Arg::No, Rule::Allow),
    Opt::new("silent", Some('s'), Arg::No, Rule::Allow),
    Opt::new("force", Some('f'), Arg::No, Rule::Allow),
    Opt::new("binary-mode", None, Arg::No, Rule::Allow),
    Opt::new("one-database", Some('o'), Arg::No, Rule::Allow),
    Opt::new("init-command", None, Arg::Required, Rule::Allow),
    Opt::new("max-allowed-packet", None, Arg::Required, Rule::Allow),
    Opt::new("sandbox", None, Arg::No, Rule::Allow),
    Opt::new(
        "local-infile",
        None,
        Arg::Optional,
        Rule::Check(local_infile_off),
    ),
    Opt::new("tee", None, Arg::Required, Rule::Deny(FILES)),
    Opt::new(
        "pager",
        None,
        Arg::Optional,
        Rule::Deny("it runs a program"),
    ),
    Opt::new(
        "load-data-local-dir",
        None,
        Arg::Required,
        Rule::Deny("it sends local files to the server"),
    ),
];

pub static DUMP: &[Opt] = &[
    Opt::new("single-transaction", None, Arg::No, Rule::Allow),
    Opt::new("routines", Some('R'), Arg::No, Rule::Allow),
    Opt::new("triggers", None, Arg::No, Rule::Allow),
    Opt::new("skip-triggers", None, Arg::No, Rule::Allow),
    Opt::new("events", Some('E'), Arg::No, Rule::Allow),
    Opt::new("hex-blob", None, Arg::No, Rule::Allow),
    Opt::new("skip-dump-date", None, Arg::No, Rule::Allow),
    Opt::new("system", None, Arg::Required, Rule::Allow),
    Opt::new("insert-ignore", None, Arg::No, Rule::Allow),
    Opt::new("databases", Some('B'), Arg::No, Rule::Allow),
    Opt::new("all-databases", Some('A'), Arg::No, Rule::Allow),
    Opt::new("no-create-db", Some('n'), Arg::No, Rule::Allow),
    Opt::new("no-create-info", Some('t'), Arg::No, Rule::Allow),
    Opt::new("no-data", Some('d'), Arg::No, Rule::Allow),
    Opt::new("add-drop-database", None, Arg::No, Rule::Allow),
    Opt::new("add-drop-table", None, Arg::No, Rule::Allow),
    Opt::new("skip-add-drop-table", None, Arg::No, Rule::Allow),
    Opt::new("quick", Some('q'), Arg::No, Rule::Allow),
    Opt::new("skip-lock-tables", None, Arg::No, Rule::Allow),
    Opt::new("lock-tables", Some('l'), Arg::No, Rule::Allow),
    Opt::new("ignore-table", None, Arg::Required, Rule::Allow),
    Opt::new("where", Some('w'), Arg::Required, Rule::Allow),
    Opt::new("master-data", None, Arg::Optional, Rule::Allow),
    Opt::new("gtid", None, Arg::No, Rule::Allow),
    Opt::new("result-file", Some('r'), Arg::Required, Rule::Deny(FILES)),
    Opt::new("tab", Some('T'), Arg::Required, Rule::Deny(FILES)),
    Opt::new("dir", None, Arg::Required, Rule::Deny(FILES)),
    Opt::new("log-error", None, Arg::Required, Rule::Deny(FILES)),
];

/// Options that only work as the first argument, before anything else.
const OPTION_FILES: &[&str] = &[
    "--defaults-file",
    "--defaults-extra-file",
    "--defaults-group-suffix",
    "--print-defaults",
    "--no-defaults",
];

pub fn is_client(program: &str) -> bool {
    matches!(program, "mariadb" | "mysql")
}

/// `--no-defaults` first: the programs read `~/.my.cnf` and `/etc/mysql` otherwise, and an
/// option file can set what the command line may not (`pager`, `plugin-dir`).
pub fn check_option_files(program: &str, args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) != Some("--no-defaults") {
        return Err(format!(
            "{program} must be started with --no-defaults as its first argument (option files could load plugins or run a pager)"
        ));
    }
    if let Some(a) = args[1..]
        .iter()
        .find(|a| OPTION_FILES.iter().any(|o| a.starts_with(o)))
    {
        return Err(format!("{program}: {a} is not allowed (option files)"));
    }
    Ok(())
}

fn local_infile_off(v: &str, _: &super::Input) -> Result<(), String> {
    if matches!(v, "0" | "OFF" | "off" | "FALSE" | "false") {
        Ok(())
    } else {
        Err("--local-infile lets the server read the workload's files".into())
    }
}
