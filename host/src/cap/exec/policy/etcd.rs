//! etcdctl (v3 API): health, member list, and snapshots in the action's scratch directory.
//!
//! What it must never do for a plugin: run a program (`watch … -- cmd`, `lock name cmd`,
//! `elect name cmd` run one for every event), write or read a file outside the host's
//! scratch directory (`snapshot save PATH`), change the cluster (put, del, member, auth,
//! defrag, …), or send the password to endpoints the Workload did not name.

use super::Input;
use super::syntax::{Arg, Opt, Rule};

pub static ETCDCTL: &[Opt] = &[
    Opt::new(
        "endpoints",
        None,
        Arg::Required,
        Rule::Pin("ETCDCTL_ENDPOINTS"),
    ),
    Opt::new("dial-timeout", None, Arg::Required, Rule::Allow),
    Opt::new("command-timeout", None, Arg::Required, Rule::Allow),
    Opt::new("keepalive-time", None, Arg::Required, Rule::Allow),
    Opt::new("keepalive-timeout", None, Arg::Required, Rule::Allow),
    Opt::new(
        "user",
        None,
        Arg::Required,
        Rule::Check(user_without_password),
    ),
    Opt::new(
        "password",
        None,
        Arg::Required,
        Rule::Deny("the password comes from the Workload's secret (ETCDCTL_PASSWORD)"),
    ),
    Opt::new("cacert", None, Arg::Required, Rule::Allow),
    Opt::new("cert", None, Arg::Required, Rule::Allow),
    Opt::new("key", None, Arg::Required, Rule::Allow),
    Opt::new("insecure-transport", None, Arg::No, Rule::Allow),
    Opt::new("insecure-skip-tls-verify", None, Arg::No, Rule::Allow),
    Opt::new("write-out", Some('w'), Arg::Required, Rule::Allow),
    Opt::new("hex", None, Arg::No, Rule::Allow),
    Opt::new(
        "debug",
        None,
        Arg::No,
        Rule::Deny("it prints the environment, the password included"),
    ),
    // snapshot restore
    Opt::new(
        "data-dir",
        None,
        Arg::Required,
        Rule::Check(new_absolute_dir),
    ),
    Opt::new(
        "wal-dir",
        None,
        Arg::Required,
        Rule::Deny("a restore writes its WAL in the data dir here"),
    ),
    Opt::new("name", None, Arg::Required, Rule::Allow),
    Opt::new("initial-cluster", None, Arg::Required, Rule::Allow),
    Opt::new("initial-cluster-token", None, Arg::Required, Rule::Allow),
    Opt::new(
        "initial-advertise-peer-urls",
        None,
        Arg::Required,
        Rule::Allow,
    ),
    Opt::new("skip-hash-check", None, Arg::No, Rule::Allow),
    // get
    Opt::new("prefix", None, Arg::No, Rule::Allow),
    Opt::new("keys-only", None, Arg::No, Rule::Allow),
    Opt::new("count-only", None, Arg::No, Rule::Allow),
    Opt::new("limit", None, Arg::Required, Rule::Allow),
];

fn user_without_password(v: &str, _: &Input) -> Result<(), String> {
    if v.contains(':') {
        return Err(
            "--user NAME:PASSWORD puts a password in argv; give the name and the password secret"
                .into(),
        );
    }
    Ok(())
}

fn new_absolute_dir(v: &str, _: &Input) -> Result<(), String> {
    if !v.starts_with('/') || v.split('/').any(|s| s == "..") {
        return Err(format!("--data-dir {v}: an absolute path without `..`"));
    }
    Ok(())
}

/// The subcommand and its file argument (snapshot files live in the scratch directory).
pub fn positionals(words: &[String], input: &Input) -> Result<(), String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["version"] | ["member", "list"] | ["endpoint", "health" | "status"] => Ok(()),
        ["get", _] | ["get", _, _] => Ok(()),
        ["snapshot", "save" | "status" | "restore", file] => input.in_scratch(file),
        _ => Err(format!(
            "etcdctl {} is not allowed here (allowed: version, member list, endpoint health|status, get, snapshot save|status|restore FILE in the scratch directory)",
            w.join(" ")
        )),
    }
}
