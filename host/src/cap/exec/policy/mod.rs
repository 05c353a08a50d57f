//! The argument policy: what a granted program may be asked to do.
//!
//! A grant says which argv shapes a plugin may run; the policy says what the program does
//! with them. For the tools coffer knows (PostgreSQL's, MariaDB's, redis-cli, etcdctl) the
//! command line is parsed the way the tool parses it ([`syntax`]) and every option is
//! judged: options that write or read files, run shell commands, load libraries or send the
//! password elsewhere are refused in every spelling (`--file=x`, `--file x`, `-fx`, `-qfx`),
//! options coffer does not know are refused rather than guessed at, and the host adds what
//! makes a tool safe (psql's `\restrict`, MariaDB's `--sandbox`). Programs that run code or
//! touch files by design (shells, interpreters, `cat`, `dd`, …) cannot be granted with
//! wildcards at all unless the Blueprint says `unsafeArgs: true` ([`check_grant`]).

mod etcd;
mod mariadb;
mod medusa;
mod pg;
mod pgbackrest;
mod redis;
pub mod syntax;

pub use pg::psql_restricts;
pub use pgbackrest::PINS as PGBACKREST_PINS;
use std::collections::BTreeMap;
use syntax::{Item, Opt, Rule, Syntax};

/// What the policy knows about the process besides its argv.
pub struct Input<'a> {
    /// The Workload's environment: the servers it pins (PGHOST, MYSQL_HOST, …).
    pub workload_env: &'a BTreeMap<String, String>,
    /// The process is handed a secret: then the server it talks to must be pinned.
    pub has_secret: bool,
    /// The action's scratch directory in this target, once the plugin asked for one.
    pub scratch: Option<&'a str>,
    /// The Workload's volumes (`spec.volumes`): where a tool may restore into.
    pub volumes: &'a [std::path::PathBuf],
}

impl<'a> Input<'a> {
    #[cfg(test)]
    pub fn test(env: &'a BTreeMap<String, String>, has_secret: bool) -> Input<'a> {
        Input {
            workload_env: env,
            has_secret,
            scratch: Some("/tmp/coffer-scratch.x"),
            volumes: &[],
        }
    }

    /// `path` is a file directly in the action's scratch directory.
    pub fn in_scratch(&self, path: &str) -> Result<(), String> {
        let Some(dir) = self.scratch else {
            return Err(format!(
                "file {path}: files go in the action's scratch directory (exec.scratch-dir), and this action has none yet"
            ));
        };
        match path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            Some(name) if scratch_name(name) => Ok(()),
            _ => Err(format!(
                "file {path} is not a file of the action's scratch directory {dir}; a plugin may only have tools read and write files there"
            )),
        }
    }
}

/// A plain file name in a scratch directory.
pub fn scratch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
}

/// What the host runs after vetting: the argv (with what the host adds) and bytes it writes
/// to stdin before the plugin's.
#[derive(Debug, Clone, PartialEq)]
pub struct Vetted {
    pub argv: Vec<String>,
    pub stdin_preamble: Option<Vec<u8>>,
}

struct Tool {
    names: &'static [&'static str],
    syntax: Syntax,
    tables: &'static [&'static [Opt]],
    /// Env names that pin the tool's server and that the tool does not read itself: the
    /// host passes them as these flags when the plugin gives none.
    inject: &'static [(&'static str, &'static str)],
}

static TOOLS: &[Tool] = &[
    Tool {
        names: &["psql"],
        syntax: Syntax::Gnu,
        tables: &[pg::CONN, pg::PSQL],
        inject: &[],
    },
    Tool {
        names: &["pg_dump"],
        syntax: Syntax::Gnu,
        tables: &[pg::CONN, pg::DUMP, pg::PG_DUMP],
        inject: &[],
    },
    Tool {
        names: &["pg_dumpall"],
        syntax: Syntax::Gnu,
        tables: &[pg::CONN, pg::DUMP, pg::PG_DUMPALL],
        inject: &[],
    },
    Tool {
        names: &["pg_restore"],
        syntax: Syntax::Gnu,
        tables: &[pg::CONN, pg::PG_RESTORE],
        inject: &[],
    },
    Tool {
        names: &["mariadb", "mysql"],
        syntax: Syntax::MyGetopt,
        tables: &[mariadb::CONN, mariadb::CLIENT],
        inject: MARIADB_PINS,
    },
    Tool {
        names: &["mariadb-dump", "mysqldump"],
        syntax: Syntax::MyGetopt,
        tables: &[mariadb::CONN, mariadb::DUMP],
        inject: MARIADB_PINS,
    },
    Tool {
        names: &["redis-cli"],
        syntax: Syntax::Leading,
        tables: &[redis::REDIS_CLI],
        inject: &[
            ("REDIS_HOST", "-h"),
            ("REDIS_PORT", "-p"),
            ("REDIS_SOCKET", "-s"),
        ],
    },
    Tool {
        names: &["etcdctl"],
        syntax: Syntax::Pflag,
        tables: &[etcd::ETCDCTL],
        inject: &[],
    },
    Tool {
        names: &["pgbackrest"],
        syntax: Syntax::Gnu,
        tables: &[pgbackrest::PGBACKREST],
        inject: pgbackrest::PINS,
    },
    Tool {
        names: &["medusa"],
        syntax: Syntax::Gnu,
        tables: &[medusa::MEDUSA],
        inject: &[(medusa::CONFIG_ENV, "--config-file")],
    },
    Tool {
        names: &["redis-check-rdb"],
        syntax: Syntax::Gnu,
        tables: &[],
        inject: &[],
    },
];

/// mariadb-dump ignores MYSQL_HOST, so the host passes the pins as flags.
const MARIADB_PINS: &[(&str, &str)] = &[
    ("MYSQL_HOST", "--host"),
    ("MYSQL_TCP_PORT", "--port"),
    ("MYSQL_UNIX_PORT", "--socket"),
];

/// The name a program is known by: its file name.
pub fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// Whether coffer has an argument policy for this program.
pub fn is_known(argv0: &str) -> bool {
    let name = program_name(argv0);
    TOOLS.iter().any(|t| t.names.contains(&name))
}

/// Vet a command line. `Ok` with what to run; `Err` says which argument was refused and why.
/// Programs coffer has no policy for pass unchanged: their grant's argv shapes are the
/// whole boundary (and wildcards for dangerous ones need `unsafeArgs`, see [`check_grant`]).
pub fn vet(argv: &[String], input: &Input) -> Result<Vetted, String> {
    let argv0 = argv.first().map(String::as_str).unwrap_or_default();
    let name = program_name(argv0);
    let Some(tool) = TOOLS.iter().find(|t| t.names.contains(&name)) else {
        return Ok(Vetted {
            argv: argv.to_vec(),
            stdin_preamble: None,
        });
    };
    let args = &argv[1..];
    let refuse = |e: String| format!("{name}: {e}");
    let parse_from = if tool.syntax == Syntax::MyGetopt {
        mariadb::check_option_files(name, args).map_err(|e| e.to_string())?;
        1
    } else {
        0
    };
    let items = syntax::parse(tool.syntax, tool.tables, &args[parse_from..]).map_err(refuse)?;
    let mut positionals = Vec::new();
    let mut given: Vec<&'static str> = Vec::new();
    for item in &items {
        match item {
            Item::Positional(p) => positionals.push(p.clone()),
            Item::Opt { name: opt, value } => {
                given.push(opt);
                let rule = tool
                    .tables
                    .iter()
                    .flat_map(|t| t.iter())
                    .find(|o| o.long == *opt)
                    .map(|o| o.rule)
                    .unwrap_or(Rule::Deny("unknown"));
                let v = value.as_deref().unwrap_or_default();
                match rule {
                    Rule::Allow => {}
                    Rule::Deny(why) => {
                        return Err(refuse(format!("option --{opt} is not allowed: {why}")));
                    }
                    Rule::Check(f) => f(v, input).map_err(|e| refuse(format!("--{opt}: {e}")))?,
                    Rule::Pin(env) => {
                        pin(env, v, input).map_err(|e| refuse(format!("--{opt} {v}: {e}")))?
                    }
                }
            }
        }
    }
    match name {
        "psql" | "pg_dump" | "pg_dumpall" | "pg_restore" => {
            pg::positionals(name, &positionals, input).map_err(refuse)?
        }
        "redis-cli" => redis::positionals(&positionals).map_err(refuse)?,
        "pgbackrest" => pgbackrest::positionals(&positionals, args).map_err(refuse)?,
        "etcdctl" => etcd::positionals(&positionals, input).map_err(refuse)?,
        "medusa" => medusa::positionals(&positionals).map_err(refuse)?,
        "redis-check-rdb" => match positionals.as_slice() {
            [file] => input.in_scratch(file).map_err(refuse)?,
            _ => return Err(refuse("give one RDB file of the scratch directory".into())),
        },
        _ => {}
    }

    let mut out = argv.to_vec();
    let mut at = 1 + parse_from;
    for (env, flag) in tool.inject {
        let long = flag.trim_start_matches('-');
        let given_already = given.iter().any(|g| {
            *g == long
                || tool
                    .tables
                    .iter()
                    .flat_map(|t| t.iter())
                    .any(|o| o.long == *g && o.rule_pins(env))
        });
        if let Some(v) = input.workload_env.get(*env)
            && !given_already
        {
            if flag.starts_with("--") {
                out.insert(at, format!("{flag}={v}"));
                at += 1;
            } else {
                out.insert(at, flag.to_string());
                out.insert(at + 1, v.clone());
                at += 2;
            }
        }
    }
    let mut stdin_preamble = None;
    match name {
        "psql" => stdin_preamble = Some(pg::restrict_preamble(&random_key())),
        n if mariadb::is_client(n) => {
            // Shell escapes (`system`, `\!`, `pager`) off in -e and in scripts on stdin;
            // LOAD DATA LOCAL off.
            out.insert(at, "--local-infile=0".into());
            out.insert(at, "--sandbox".into());
        }
        _ => {}
    }
    Ok(Vetted {
        argv: out,
        stdin_preamble,
    })
}

impl Opt {
    fn rule_pins(&self, env: &str) -> bool {
        matches!(self.rule, Rule::Pin(e) if e == env)
    }
}

/// A server endpoint a process will talk to (`value`), against the Workload's pin in `env`:
/// equal to it when pinned; when not, allowed only if the process holds no secret (else the
/// plugin could send the password to a server of its choice). A host pin `*.SUFFIX` allows
/// any one DNS label under SUFFIX: the instances of one account's region
/// (`*.abcdefghij.eu-west-1.rds.amazonaws.com`), whose names a plugin makes as it goes.
pub fn pin(env: &str, value: &str, input: &Input) -> Result<(), String> {
    match input.workload_env.get(env) {
        Some(pinned) if pinned == value || one_label_under(pinned, value) => Ok(()),
        Some(pinned) => Err(format!(
            "the Workload pins {env}={pinned}; a plugin cannot send this process elsewhere"
        )),
        None if input.has_secret => Err(format!(
            "this process is given a secret, so its server must be pinned: set {env} in the Workload's env (spec.env)"
        )),
        None => Ok(()),
    }
}

/// `value` is one DNS label (letters, digits, `-`) under the `*.` pattern `pinned`; the
/// suffix must have at least two dots, so no pin covers a whole top-level domain.
fn one_label_under(pinned: &str, value: &str) -> bool {
    let Some(suffix) = pinned.strip_prefix("*.") else {
        return false;
    };
    if suffix.matches('.').count() < 2 || suffix.contains('*') {
        return false;
    }
    value
        .to_ascii_lowercase()
        .strip_suffix(&suffix.to_ascii_lowercase())
        .and_then(|rest| rest.strip_suffix('.'))
        .is_some_and(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn random_key() -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

/// Programs that run code or read, write or delete files by design: a wildcard grant of one
/// is a grant of code execution (or of every file coffer can reach).
const UNSAFE_PROGRAMS: &[&str] = &[
    // shells and interpreters
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "csh",
    "tcsh",
    "fish",
    "busybox",
    "toybox",
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "deno",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "wish",
    "expect",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "sed",
    "ed",
    "vi",
    "vim",
    "nvim",
    "emacs",
    "nano",
    "less",
    "more",
    "man",
    "gdb",
    "lldb",
    "strace",
    "ltrace",
    "jq",
    "yq",
    "make",
    "cmake",
    "git",
    "java",
    "jshell",
    "osascript",
    "pwsh",
    // programs that run other programs
    "env",
    "xargs",
    "find",
    "nice",
    "nohup",
    "timeout",
    "stdbuf",
    "setsid",
    "sudo",
    "su",
    "doas",
    "runuser",
    "chroot",
    "unshare",
    "nsenter",
    "ionice",
    "taskset",
    "watch",
    "time",
    "flock",
    "script",
    "ssh",
    "scp",
    "sftp",
    "rsync",
    "kubectl",
    "docker",
    "crictl",
    "parallel",
    // file tools
    "cat",
    "tac",
    "head",
    "tail",
    "dd",
    "tee",
    "cp",
    "mv",
    "rm",
    "rmdir",
    "ln",
    "install",
    "mkdir",
    "touch",
    "truncate",
    "chmod",
    "chown",
    "chgrp",
    "tar",
    "cpio",
    "zip",
    "unzip",
    "gzip",
    "gunzip",
    "zcat",
    "bzip2",
    "xz",
    "zstd",
    "lz4",
    "split",
    "sort",
    "uniq",
    "od",
    "xxd",
    "hexdump",
    "base64",
    "strings",
    "grep",
    "egrep",
    "fgrep",
    "diff",
    "cmp",
    "shred",
    "openssl",
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "mktemp",
    "realpath",
    "readlink",
    "stat",
    "ls",
    "du",
    "file",
    "wc",
    "md5sum",
    "sha256sum",
    "sha1sum",
    "tr",
    "cut",
    "paste",
    "join",
    "comm",
    "fold",
    "fmt",
    "nl",
    "pr",
    "csplit",
    "tee",
    "sqlite3",
];

/// Whether a program runs code or touches files by design.
pub fn is_unsafe_program(argv0: &str) -> bool {
    let name = program_name(argv0);
    UNSAFE_PROGRAMS.contains(&name)
        || name.starts_with("python")
        || name.starts_with("perl")
        || name.starts_with("ruby")
        || name.starts_with("php")
}

/// What a grant may say: its program a literal (a wildcard there matches programs nobody
/// reviewed), and no wildcard argument for a program that runs code or touches files, unless
/// the Blueprint says `unsafeArgs: true`. `Ok` carries a warning for a wildcard grant of a
/// program coffer has no argument policy for.
pub fn check_grant(pattern: &str, unsafe_args: bool) -> Result<Option<String>, String> {
    let Some(parsed) = coffer_manifest::ExecPattern::parse(pattern) else {
        return Err(format!("exec grant {pattern:?} names no program"));
    };
    let program = parsed.program();
    let args: Vec<&str> = parsed.args().collect();
    if program.contains(['*', '?']) {
        return Err(format!(
            "exec grant {pattern:?}: name the program literally; a wildcard there grants programs nobody reviewed"
        ));
    }
    let wild = args.iter().any(|a| a.contains(['*', '?']));
    if !wild {
        return Ok(None);
    }
    if is_unsafe_program(program) {
        if unsafe_args {
            return Ok(Some(format!(
                "exec grant {pattern:?}: {program} runs code or touches files and its arguments are not vetted (unsafeArgs: true)"
            )));
        }
        return Err(format!(
            "exec grant {pattern:?}: {program} runs code or reads, writes or deletes files, so granting it with wildcard arguments grants all of that; grant the exact argv shapes the plugin needs, or set spec.grants.unsafeArgs: true if that is really meant"
        ));
    }
    if !is_known(program) {
        return Ok(Some(format!(
            "exec grant {pattern:?}: coffer has no argument policy for {program}; the plugin may pass it any arguments the pattern matches"
        )));
    }
    Ok(None)
}

/// Check every exec grant of a Blueprint ([`check_grant`]); the warnings for programs coffer
/// has no argument policy for.
pub fn check_grants(grants: &coffer_manifest::Capabilities) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for p in &grants.exec {
        if let Some(w) = check_grant(p, grants.unsafe_args)? {
            warnings.push(w);
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn vet_with(a: &[&str], env: &[(&str, &str)], secret: bool) -> Result<Vetted, String> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vet(&argv(a), &Input::test(&env, secret))
    }

    fn refused(a: &[&str]) -> String {
        vet_with(a, &[], false).expect_err(&format!("{a:?} was allowed"))
    }

    #[test]
    fn medusa_runs_this_nodes_commands_with_the_workloads_configuration() {
        let ini = [("MEDUSA_CONFIG_FILE", "/etc/cassandra/medusa.ini")];
        // The pinned configuration is passed before the command; another is refused.
        let v = vet_with(
            &[
                "medusa",
                "backup",
                "--backup-name",
                "rp-1",
                "--mode",
                "full",
            ],
            &ini,
            false,
        )
        .unwrap();
        assert_eq!(
            v.argv,
            argv(&[
                "medusa",
                "--config-file=/etc/cassandra/medusa.ini",
                "backup",
                "--backup-name",
                "rp-1",
                "--mode",
                "full"
            ])
        );
        assert!(
            vet_with(
                &[
                    "medusa",
                    "--config-file",
                    "/etc/cassandra/medusa.ini",
                    "verify",
                    "--backup-name",
                    "x"
                ],
                &ini,
                false
            )
            .is_ok()
        );
        for a in [
            &[
                "medusa",
                "--config-file",
                "/tmp/evil.ini",
                "verify",
                "--backup-name",
                "x",
            ][..],
            &["medusa", "--config-file=/proc/self/fd/0", "list-backups"],
        ] {
            let e = vet_with(a, &ini, false).expect_err(&format!("{a:?}"));
            assert!(e.contains("pins MEDUSA_CONFIG_FILE"), "{e}");
        }
        // Not pinned: medusa's own /etc/medusa/medusa.ini, never one the plugin names.
        assert_eq!(
            vet_with(&["medusa", "purge"], &[], false).unwrap().argv,
            argv(&["medusa", "purge"])
        );
        assert!(
            refused(&["medusa", "--config-file", "/tmp/x.ini", "purge"])
                .contains("MEDUSA_CONFIG_FILE")
        );
        for (a, why) in [
            (
                &[
                    "medusa",
                    "--fqdn",
                    "10.0.0.9",
                    "restore-node",
                    "--backup-name",
                    "b",
                ][..],
                "another node",
            ),
            (&["medusa", "--bucket-name", "theirs", "backup"], "storage"),
            (&["medusa", "--prefix=x", "backup"], "storage"),
            (
                &["medusa", "--ssh-key-file", "/root/.ssh/id_rsa", "backup"],
                "other nodes",
            ),
            (&["medusa", "backup-cluster"], "not allowed"),
            (
                &["medusa", "restore-cluster", "--backup-name", "b"],
                "not allowed",
            ),
            (
                &[
                    "medusa",
                    "download",
                    "--backup-name",
                    "b",
                    "--download-destination",
                    "/etc",
                ],
                "not one coffer knows",
            ),
            (
                &["medusa", "restore-node", "--backup-name", "b", "--remote"],
                "another node",
            ),
            (
                &[
                    "medusa",
                    "restore-node",
                    "--backup-name",
                    "b",
                    "--seeds",
                    "10.0.0.1",
                ],
                "other nodes",
            ),
            (
                &[
                    "medusa",
                    "restore-node",
                    "--backup-name",
                    "b",
                    "--use-sstableloader",
                ],
                "whole cluster",
            ),
            (
                &[
                    "medusa",
                    "restore-node",
                    "--backup-name",
                    "b",
                    "--temp-dir",
                    "/var/lib/cassandra",
                ],
                "scratch",
            ),
            (
                &["medusa", "delete-backup", "--backup-name", "b", "-a"],
                "every node",
            ),
            (&["medusa", "backup", "--keep-snapshot"], "snapshot"),
            (
                &["medusa", "backup", "--backup-name", "../x"],
                "not a backup name",
            ),
            (
                &["medusa", "backup", "--mode", "incremental"],
                "full or differential",
            ),
            (
                &["medusa", "backup", "--backup-nam", "b"],
                "write options in full",
            ),
            (&["medusa", "verify", "b1"], "not allowed"),
        ] {
            let e = refused(a);
            assert!(e.contains(why), "{a:?}: {e}");
        }
        assert!(
            vet_with(
                &[
                    "medusa",
                    "restore-node",
                    "--backup-name",
                    "b",
                    "--in-place",
                    "--temp-dir",
                    "/tmp/coffer-scratch.x",
                    "--keyspace",
                    "shop"
                ],
                &[],
                false
            )
            .is_ok()
        );
        assert!(
            vet_with(
                &["medusa", "-v", "delete-backup", "--backup-name", "b", "-c"],
                &[],
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn file_and_shell_options_are_refused_in_every_spelling() {
        for a in [
            &["psql", "-X", "-h", "/nonexistent", "-o", "|id > /tmp/x"][..],
            &["psql", "--output=|id"],
            &["psql", "-o|id"],
            &["psql", "-Xqo|id"],
            &["psql", "-c", "\\! id"],
            &["psql", "--command=\\copy t from program 'id'"],
            &["psql", "-L", "/tmp/log"],
            &["psql", "-f", "/etc/shadow"],
            &["psql", "--fil=/etc/shadow"],
            &["psql", "-v", "ECHO=all"],
            &["psql", "-a"],
            &["psql", "-P", "pager=always"],
            &["pg_dump", "-f", "/root/.bashrc", "shop"],
            &["pg_dump", "-fx"],
            &["pg_dump", "-Fd", "shop"],
            &["pg_dump", "--format=directory"],
            &["pg_dump", "--filter=/etc/shadow"],
            &["pg_dumpall", "--file=/tmp/x"],
            &["pg_restore", "/var/backups/other.dump"],
            &["pg_restore", "-L", "/etc/shadow"],
            &["pg_restore", "-d", "dbname=x sslkey=/root/key"],
            &["pg_dump", "--cluster", "15/evil:5432"],
            &["mariadb", "--no-defaults", "--tee=/tmp/x"],
            &["mariadb", "--no-defaults", "--plugin-dir=/tmp"],
            &["mariadb", "--no-defaults", "--default-auth=evil"],
            &["mariadb", "--no-defaults", "--pager=sh"],
            &["mariadb", "--defaults-extra-file=/tmp/my.cnf"],
            &["mariadb", "-e", "system id"],
            &["mariadb", "--no-defaults", "--defaults-file=/tmp/x"],
            &["mariadb", "--no-defaults", "--local-infile=1"],
            &[
                "mariadb-dump",
                "--no-defaults",
                "--result-file=/tmp/x",
                "db",
            ],
            &["mariadb-dump", "--no-defaults", "-r/tmp/x", "db"],
            &["mariadb-dump", "--no-defaults", "--tab=/tmp", "db"],
            &["redis-cli", "--rdb", "/root/.ssh/authorized_keys"],
            &["redis-cli", "--eval", "/etc/shadow"],
            &["redis-cli", "--functions-rdb", "/tmp/x"],
            &["redis-cli", "CONFIG", "SET", "dir", "/root/.ssh"],
            &["redis-cli", "--cluster", "backup", "x:1", "/tmp"],
            &["etcdctl", "snapshot", "save", "/etc/cron.d/x"],
            &["etcdctl", "snapshot", "save", "/tmp/coffer-scratch.x/../x"],
            &["etcdctl", "watch", "k", "--", "sh", "-c", "id"],
            &["etcdctl", "lock", "l", "id"],
            &["etcdctl", "--debug", "endpoint", "health"],
            &[
                "etcdctl",
                "snapshot",
                "restore",
                "/tmp/coffer-scratch.x/s.db",
                "--wal-dir=/x",
            ],
            &["redis-check-rdb", "/etc/shadow"],
        ] {
            let e = refused(a);
            assert!(!e.is_empty(), "{a:?}");
        }
    }

    #[test]
    fn what_the_first_party_plugins_run_is_allowed() {
        for a in [
            &[
                "psql",
                "-X",
                "--no-password",
                "-A",
                "-t",
                "-q",
                "-0",
                "-v",
                "ON_ERROR_STOP=1",
                "--dbname=dbname='postgres'",
                "-c",
                "SELECT 1",
            ][..],
            &[
                "psql",
                "-X",
                "--no-password",
                "-q",
                "--dbname=dbname='o\\'brien'",
            ],
            &[
                "pg_dumpall",
                "--globals-only",
                "--no-password",
                "--dbname=dbname='postgres'",
                "--no-role-passwords",
            ],
            &[
                "pg_dump",
                "--format=custom",
                "--compress=0",
                "--no-password",
                "--dbname=dbname='shop'",
            ],
            &[
                "pg_restore",
                "--create",
                "--exit-on-error",
                "--no-password",
                "--dbname=dbname='postgres'",
            ],
            &[
                "mariadb-dump",
                "--no-defaults",
                "--single-transaction",
                "--routines",
                "--skip-dump-date",
                "--",
                "-odd name",
            ],
            &[
                "mariadb-dump",
                "--no-defaults",
                "--system=users",
                "--insert-ignore",
            ],
            &[
                "redis-cli",
                "--no-auth-warning",
                "-h",
                "127.0.0.1",
                "-p",
                "6379",
                "--rdb",
                "-",
            ],
            &["redis-cli", "PING"],
            &["redis-cli", "config", "get", "dir"],
            &[
                "etcdctl",
                "--dial-timeout=5s",
                "--command-timeout=5s",
                "endpoint",
                "health",
            ],
            &[
                "etcdctl",
                "snapshot",
                "save",
                "/tmp/coffer-scratch.x/snapshot.db",
            ],
            &[
                "etcdctl",
                "snapshot",
                "restore",
                "/tmp/coffer-scratch.x/snapshot.db",
                "--data-dir=/var/lib/etcd-new",
            ],
            &["redis-check-rdb", "/tmp/coffer-scratch.x/dump.rdb"],
            &["some-tool", "--anything", "/etc/shadow"],
        ] {
            vet_with(a, &[], false).unwrap_or_else(|e| panic!("{a:?}: {e}"));
        }
    }

    #[test]
    fn servers_the_workload_pins_win() {
        // A process given a secret talks only to the pinned server.
        let pg = [("PGHOST", "127.0.0.1"), ("PGPORT", "5432")];
        assert!(vet_with(&["pg_dump", "-h", "evil.example", "shop"], &pg, true).is_err());
        assert!(vet_with(&["pg_dump", "-h", "127.0.0.1", "shop"], &pg, true).is_ok());
        assert!(vet_with(&["pg_dump", "--dbname=host=evil dbname=shop"], &pg, true).is_err());
        assert!(vet_with(&["pg_dump", "-p5433"], &pg, true).is_err());
        // A `*.` pin: one label under its suffix, nothing else.
        let wild = [("PGHOST", "*.abc123.eu-west-1.rds.amazonaws.com")];
        let wild: BTreeMap<String, String> = wild
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let input = Input::test(&wild, true);
        assert!(
            pin(
                "PGHOST",
                "shop-dump-1.abc123.eu-west-1.rds.amazonaws.com",
                &input
            )
            .is_ok()
        );
        for evil in [
            "evil.com",
            "a.b.abc123.eu-west-1.rds.amazonaws.com",
            "abc123.eu-west-1.rds.amazonaws.com",
            "x.abc123.eu-west-1.rds.amazonaws.com.evil.com",
            "x.evilabc123.eu-west-1.rds.amazonaws.com",
            "x y.abc123.eu-west-1.rds.amazonaws.com",
        ] {
            assert!(pin("PGHOST", evil, &input).is_err(), "{evil}");
        }
        assert!(!one_label_under("*.com", "evil.com"));
        assert!(!one_label_under("*.example.com", "evil.example.com"));
        // Unpinned: allowed without a secret, refused with one.
        assert!(vet_with(&["pg_dump", "-h", "db", "shop"], &[], false).is_ok());
        let e = vet_with(&["pg_dump", "-h", "db", "shop"], &[], true).unwrap_err();
        assert!(e.contains("set PGHOST in the Workload's env"), "{e}");
        // mariadb-dump ignores MYSQL_HOST: the host passes the pins as flags.
        let my = [("MYSQL_HOST", "127.0.0.1"), ("MYSQL_TCP_PORT", "3307")];
        let v = vet_with(&["mariadb-dump", "--no-defaults", "--", "shop"], &my, true).unwrap();
        assert_eq!(
            v.argv,
            argv(&[
                "mariadb-dump",
                "--no-defaults",
                "--host=127.0.0.1",
                "--port=3307",
                "--",
                "shop"
            ])
        );
        assert!(vet_with(&["mariadb-dump", "--no-defaults", "--host=evil"], &my, true).is_err());
        assert!(vet_with(&["mariadb-dump", "--no-defaults", "-hevil"], &my, true).is_err());
        let r = [("REDIS_HOST", "10.0.0.5")];
        let v = vet_with(&["redis-cli", "--rdb", "-"], &r, true).unwrap();
        assert_eq!(v.argv, argv(&["redis-cli", "-h", "10.0.0.5", "--rdb", "-"]));
        assert!(
            vet_with(
                &["etcdctl", "--endpoints=evil:2379", "endpoint", "health"],
                &[],
                true
            )
            .is_err()
        );
    }

    #[test]
    fn the_host_makes_tools_safe() {
        let v = vet_with(&["psql", "-X", "-d", "shop"], &[], false).unwrap();
        let pre = String::from_utf8(v.stdin_preamble.unwrap()).unwrap();
        assert!(
            pre.starts_with("\\restrict ") && pre.ends_with('\n') && pre.len() > 30,
            "{pre}"
        );
        let v = vet_with(&["mariadb", "--no-defaults", "-e", "SELECT 1"], &[], false).unwrap();
        assert_eq!(
            v.argv,
            argv(&[
                "mariadb",
                "--no-defaults",
                "--sandbox",
                "--local-infile=0",
                "-e",
                "SELECT 1"
            ])
        );
    }

    #[test]
    fn grants_of_programs_that_run_code_need_unsafe_args() {
        for g in [
            "cat **",
            "dd **",
            "rm -rf **",
            "mv -f **",
            "sh -c *",
            "/bin/bash **",
            "python3 *",
            "env **",
            "find / **",
        ] {
            let e = check_grant(g, false).unwrap_err();
            assert!(e.contains("unsafeArgs"), "{g}: {e}");
            assert!(check_grant(g, true).unwrap().is_some(), "{g}");
        }
        // Exact argv is fine; so are wildcards for programs with a policy.
        assert_eq!(check_grant("cat /proc/loadavg", false).unwrap(), None);
        assert_eq!(check_grant("PGPASSWORD=* pg_dump **", false).unwrap(), None);
        // A program nobody reviewed gets a warning; a wildcard program is refused.
        assert!(check_grant("mongodump **", false).unwrap().is_some());
        assert!(check_grant("pg_* **", false).is_err());
    }
}
