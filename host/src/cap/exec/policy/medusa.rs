//! medusa (cassandra-medusa's CLI): backups of the Cassandra node it runs beside, into the
//! storage its configuration names, the configuration pinned by the Workload
//! (`MEDUSA_CONFIG_FILE` in `spec.env`; else medusa's own `/etc/medusa/medusa.ini`).
//!
//! What it must never do for a plugin: read another configuration (a medusa.ini names the
//! commands medusa runs — `start_cmd`, `stop_cmd`, `nodetool_executable` — so choosing it
//! is running any program), act as another node (`--fqdn`, `--remote`), reach storage or
//! hosts the configuration does not name (`--bucket-name`, `--prefix`, `--key-file`,
//! `--ssh-*`, `--seeds`), touch the whole cluster (`backup-cluster`, `restore-cluster`,
//! `--all-nodes`, `--use-sstableloader`), write files where it likes (`download`,
//! `--temp-dir` outside the action's scratch directory) or leave snapshots behind
//! (`--keep-snapshot`). Every option not listed is refused.

use super::Input;
use super::syntax::{Arg, Opt, Rule};

/// The Workload's env entry that names the configuration.
pub const CONFIG_ENV: &str = "MEDUSA_CONFIG_FILE";

pub static MEDUSA: &[Opt] = &[
    // medusa's own options (before the command)
    Opt::new("config-file", None, Arg::Required, Rule::Check(config_file)),
    Opt::new("verbosity", Some('v'), Arg::No, Rule::Allow),
    Opt::new("without-log-timestamp", None, Arg::No, Rule::Allow),
    Opt::new("bucket-name", None, Arg::Required, Rule::Deny(STORAGE)),
    Opt::new("prefix", None, Arg::Required, Rule::Deny(STORAGE)),
    Opt::new("key-file", None, Arg::Required, Rule::Deny(STORAGE)),
    Opt::new(
        "fqdn",
        None,
        Arg::Required,
        Rule::Deny("it acts as another node: backs up under its name, restores its data here"),
    ),
    Opt::new(
        "backup-grace-period-in-days",
        None,
        Arg::Required,
        Rule::Deny("how long deleted files stay is the configuration's"),
    ),
    Opt::new("ssh-username", None, Arg::Required, Rule::Deny(CLUSTER)),
    Opt::new("ssh-key-file", None, Arg::Required, Rule::Deny(CLUSTER)),
    // backup
    Opt::new("backup-name", None, Arg::Required, Rule::Check(backup_name)),
    Opt::new("mode", None, Arg::Required, Rule::Check(mode)),
    Opt::new("enable-md5-checks", None, Arg::No, Rule::Allow),
    Opt::new("stagger", None, Arg::Required, Rule::Check(number)),
    Opt::new(
        "keep-snapshot",
        None,
        Arg::No,
        Rule::Deny("it leaves the backup's snapshot on the node's disk"),
    ),
    Opt::new(
        "use-existing-snapshot",
        None,
        Arg::No,
        Rule::Deny("it backs up a snapshot made by someone else, whatever it holds"),
    ),
    // restore-node
    Opt::new("temp-dir", None, Arg::Required, Rule::Check(scratch_dir)),
    Opt::new("in-place", None, Arg::No, Rule::Allow),
    Opt::new(
        "remote",
        None,
        Arg::No,
        Rule::Deny("it restores another node's backup onto this one"),
    ),
    Opt::new("keep-auth", None, Arg::No, Rule::Allow),
    Opt::new("seeds", None, Arg::Required, Rule::Deny(CLUSTER)),
    Opt::new("verify", None, Arg::No, Rule::Allow),
    Opt::new("no-verify", None, Arg::No, Rule::Allow),
    Opt::new("keyspace", None, Arg::Required, Rule::Check(cql_name)),
    Opt::new("table", None, Arg::Required, Rule::Check(cql_name)),
    Opt::new(
        "use-sstableloader",
        None,
        Arg::No,
        Rule::Deny("it streams the backup into the whole cluster"),
    ),
    Opt::new("version-target", None, Arg::Required, Rule::Check(version)),
    // list-backups, status
    Opt::new("show-all", None, Arg::No, Rule::Allow),
    Opt::new("no-show-all", None, Arg::No, Rule::Allow),
    Opt::new("output", Some('o'), Arg::Required, Rule::Check(output)),
    // delete-backup
    Opt::new("current-node", Some('c'), Arg::No, Rule::Allow),
    Opt::new(
        "all-nodes",
        Some('a'),
        Arg::No,
        Rule::Deny("it deletes the backup of every node of the cluster, not only this one's"),
    ),
];

const STORAGE: &str = "the storage is the one the configuration names";
const CLUSTER: &str = "it reaches other nodes of the cluster; a plugin drives only this one";

/// The commands a plugin may run: this node's backups, restores, checks and deletes.
const COMMANDS: &[&str] = &[
    "backup",
    "backup-node",
    "restore-node",
    "verify",
    "status",
    "list-backups",
    "delete-backup",
    "purge",
];

fn config_file(v: &str, input: &Input) -> Result<(), String> {
    match input.workload_env.get(CONFIG_ENV) {
        Some(pinned) if pinned == v => Ok(()),
        Some(pinned) => Err(format!(
            "the Workload pins {CONFIG_ENV}={pinned}; a plugin cannot choose another configuration"
        )),
        None => Err(format!(
            "a medusa.ini names the commands medusa runs, so a plugin cannot choose one: set {CONFIG_ENV} in the Workload's env (spec.env), or leave medusa its /etc/medusa/medusa.ini"
        )),
    }
}

fn backup_name(v: &str, _: &Input) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.starts_with(['-', '.'])
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(()).ok_or_else(|| {
        format!("{v:?} is not a backup name (1 to 128 of letters, digits, '-', '_', '.')")
    })
}

fn mode(v: &str, _: &Input) -> Result<(), String> {
    matches!(v, "full" | "differential")
        .then_some(())
        .ok_or_else(|| format!("{v:?}: full or differential"))
}

fn number(v: &str, _: &Input) -> Result<(), String> {
    v.parse::<u32>()
        .map(|_| ())
        .map_err(|_| format!("{v:?} is not a number"))
}

fn output(v: &str, _: &Input) -> Result<(), String> {
    matches!(v, "text" | "json")
        .then_some(())
        .ok_or_else(|| format!("{v:?}: text or json"))
}

fn version(v: &str, _: &Input) -> Result<(), String> {
    (!v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .then_some(())
        .ok_or_else(|| format!("{v:?} is not a version"))
}

/// A keyspace or `keyspace.table`.
fn cql_name(v: &str, _: &Input) -> Result<(), String> {
    let part = |p: &str| {
        !p.is_empty() && p.len() <= 48 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let ok = match v.split_once('.') {
        Some((ks, t)) => part(ks) && part(t),
        None => part(v),
    };
    ok.then_some(())
        .ok_or_else(|| format!("{v:?} is not a keyspace or keyspace.table"))
}

/// Medusa downloads a backup there before it stops the node: the action's scratch
/// directory, which the host removes when the action ends.
fn scratch_dir(v: &str, input: &Input) -> Result<(), String> {
    match input.scratch {
        Some(dir) if v.trim_end_matches('/') == dir => Ok(()),
        Some(dir) => Err(format!(
            "{v}: the temporary directory is the action's scratch directory {dir}"
        )),
        None => Err(format!(
            "{v}: the temporary directory is the action's scratch directory (exec.scratch-dir), and this action has none yet"
        )),
    }
}

/// One command, and nothing else: every other value goes in an option.
pub fn positionals(words: &[String]) -> Result<(), String> {
    match words {
        [cmd] if COMMANDS.contains(&cmd.as_str()) => Ok(()),
        [] => Err(format!("give a command ({})", COMMANDS.join(", "))),
        _ => Err(format!(
            "medusa {} is not allowed here (allowed: {}, with their options)",
            words.join(" "),
            COMMANDS.join(", ")
        )),
    }
}
