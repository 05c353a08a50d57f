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
mod tests;
