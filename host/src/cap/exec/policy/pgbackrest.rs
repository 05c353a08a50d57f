//! pgbackrest: the user's own pgBackRest, its configuration pinned by the Workload
//! (`PGBACKREST_CONFIG`, `PGBACKREST_STANZA` … in `spec.env`, which pgBackRest reads).
//!
//! What it must never do for a plugin: run another program (`--cmd`, `--cmd-ssh`), read
//! another configuration (`--config*`), send the database elsewhere (a repo path, host or
//! bucket of the plugin's choosing, a pg host), write where it likes (lock, log and spool
//! paths), or restore over a directory the Workload did not name (`--pg1-path` outside its
//! volumes, `--force`). A restore must say `--archive-mode=off`, so the copy never pushes WAL
//! into the original's stanza. Every option not listed is refused.

use super::Input;
use super::syntax::{Arg, Opt, Rule};

pub static PGBACKREST: &[Opt] = &[
    Opt::new("stanza", None, Arg::Required, Rule::Check(stanza)),
    Opt::new(
        "type",
        None,
        Arg::Required,
        Rule::Check(backup_or_target_type),
    ),
    Opt::new("set", None, Arg::Required, Rule::Check(label)),
    Opt::new("target", None, Arg::Required, Rule::Check(no_control)),
    Opt::new(
        "target-action",
        None,
        Arg::Required,
        Rule::Check(target_action),
    ),
    Opt::new("target-exclusive", None, Arg::No, Rule::Allow),
    Opt::new("target-timeline", None, Arg::Required, Rule::Check(plain)),
    Opt::new(
        "archive-mode",
        None,
        Arg::Required,
        Rule::Check(archive_off),
    ),
    Opt::new("delta", None, Arg::No, Rule::Allow),
    Opt::new("pg1-path", None, Arg::Required, Rule::Check(in_volume)),
    Opt::new("output", None, Arg::Required, Rule::Check(output)),
    Opt::new(
        "log-level-console",
        None,
        Arg::Required,
        Rule::Check(log_level),
    ),
    Opt::new(
        "log-level-stderr",
        None,
        Arg::Required,
        Rule::Check(log_level),
    ),
    Opt::new("process-max", None, Arg::Required, Rule::Check(number)),
    Opt::new("start-fast", None, Arg::No, Rule::Allow),
    Opt::new("verbose", None, Arg::No, Rule::Allow),
    Opt::new("repo", None, Arg::Required, Rule::Check(number)),
    Opt::new("config", None, Arg::Required, Rule::Deny(CONFIG)),
    Opt::new("config-path", None, Arg::Required, Rule::Deny(CONFIG)),
    Opt::new(
        "config-include-path",
        None,
        Arg::Required,
        Rule::Deny(CONFIG),
    ),
    Opt::new(
        "cmd",
        None,
        Arg::Required,
        Rule::Deny("it names a program to run"),
    ),
    Opt::new(
        "cmd-ssh",
        None,
        Arg::Required,
        Rule::Deny("it names a program to run"),
    ),
    Opt::new(
        "force",
        None,
        Arg::No,
        Rule::Deny("it overwrites a directory that is not empty"),
    ),
];

/// What the Workload pins, by pgBackRest's env names. pgBackRest reads these itself, but
/// writes only command-line options into a restored copy's restore_command: passed as
/// flags, the copy finds its WAL in the same repository. The repo1 options come from the
/// Workload's Profile with `PGBACKREST_REPO1_TYPE: profile` (`profile_repo`); keys are never
/// among them.
pub static PINS: &[(&str, &str)] = &[
    ("PGBACKREST_CONFIG", "--config"),
    ("PGBACKREST_STANZA", "--stanza"),
    ("PGBACKREST_REPO1_TYPE", "--repo1-type"),
    ("PGBACKREST_REPO1_PATH", "--repo1-path"),
    ("PGBACKREST_REPO1_S3_BUCKET", "--repo1-s3-bucket"),
    ("PGBACKREST_REPO1_S3_ENDPOINT", "--repo1-s3-endpoint"),
    ("PGBACKREST_REPO1_S3_REGION", "--repo1-s3-region"),
    ("PGBACKREST_REPO1_S3_URI_STYLE", "--repo1-s3-uri-style"),
    ("PGBACKREST_REPO1_STORAGE_PORT", "--repo1-storage-port"),
    (
        "PGBACKREST_REPO1_STORAGE_CA_FILE",
        "--repo1-storage-ca-file",
    ),
    ("PGBACKREST_REPO1_S3_KEY_TYPE", "--repo1-s3-key-type"),
];

const CONFIG: &str = "the configuration is the Workload's (PGBACKREST_CONFIG in spec.env)";

/// The commands a plugin may run.
const COMMANDS: &[&str] = &[
    "info",
    "check",
    "stanza-create",
    "backup",
    "restore",
    "expire",
    "verify",
    "version",
];

fn plain(v: &str, _: &Input) -> Result<(), String> {
    let ok = !v.is_empty()
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then_some(())
        .ok_or_else(|| format!("{v:?}: letters, digits, '-', '_' and '.' only"))
}

/// The stanza the Workload pins (PGBACKREST_STANZA), if it pins one.
fn stanza(v: &str, input: &Input) -> Result<(), String> {
    plain(v, input)?;
    match input.workload_env.get("PGBACKREST_STANZA") {
        Some(pinned) if pinned != v => Err(format!(
            "--stanza={v}: the Workload pins stanza {pinned} (PGBACKREST_STANZA in spec.env)"
        )),
        _ => Ok(()),
    }
}

/// Up to `detail`: `debug` and `trace` print the options pgBackRest was given, and the
/// process may hold the Profile's keys.
fn log_level(v: &str, _: &Input) -> Result<(), String> {
    ["off", "error", "warn", "info", "detail"]
        .contains(&v)
        .then_some(())
        .ok_or_else(|| format!("{v:?} is not off, error, warn, info or detail"))
}

fn number(v: &str, _: &Input) -> Result<(), String> {
    v.parse::<u32>()
        .map(|_| ())
        .map_err(|_| format!("{v:?} is not a number"))
}

/// A backup label: `20260101-120000F`, `…F_20260101-130000I`.
fn label(v: &str, _: &Input) -> Result<(), String> {
    let ok = v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    ok.then_some(())
        .ok_or_else(|| format!("{v:?} is not a backup label like 20260101-120000F"))
}

fn backup_or_target_type(v: &str, _: &Input) -> Result<(), String> {
    const TYPES: &[&str] = &[
        "full",
        "diff",
        "incr",
        "immediate",
        "time",
        "lsn",
        "xid",
        "name",
        "default",
        "standby",
    ];
    TYPES
        .contains(&v)
        .then_some(())
        .ok_or_else(|| format!("{v:?} is not one of {}", TYPES.join(", ")))
}

fn target_action(v: &str, _: &Input) -> Result<(), String> {
    ["pause", "promote", "shutdown"]
        .contains(&v)
        .then_some(())
        .ok_or_else(|| format!("{v:?} is not pause, promote or shutdown"))
}

fn no_control(v: &str, _: &Input) -> Result<(), String> {
    (!v.chars().any(char::is_control))
        .then_some(())
        .ok_or_else(|| "a recovery target has no control characters".into())
}

fn archive_off(v: &str, _: &Input) -> Result<(), String> {
    (v == "off")
        .then_some(())
        .ok_or_else(|| "only --archive-mode=off: a restored copy must never push WAL into the original's stanza".into())
}

fn output(v: &str, _: &Input) -> Result<(), String> {
    ["json", "text"]
        .contains(&v)
        .then_some(())
        .ok_or_else(|| format!("{v:?} is not json or text"))
}

/// A directory the Workload names as a volume, or one directly inside one.
fn in_volume(v: &str, input: &Input) -> Result<(), String> {
    let p = std::path::Path::new(v);
    let clean = p.is_absolute()
        && !p.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        });
    let inside = clean
        && input
            .volumes
            .iter()
            .any(|vol| p == vol.as_path() || p.parent() == Some(vol.as_path()));
    inside.then_some(()).ok_or_else(|| {
        format!(
            "{v}: a restore goes into a Workload volume (spec.volumes) or a directory directly in one"
        )
    })
}

/// The command (one word), and what a restore must say.
pub fn positionals(words: &[String], argv: &[String]) -> Result<(), String> {
    let [command] = words else {
        return Err(format!(
            "give one pgbackrest command ({}), not {words:?}",
            COMMANDS.join(", ")
        ));
    };
    if !COMMANDS.contains(&command.as_str()) {
        return Err(format!(
            "pgbackrest command {command:?} is not allowed here (allowed: {})",
            COMMANDS.join(", ")
        ));
    }
    if command == "restore" && !argv.iter().any(|a| a == "--archive-mode=off") {
        return Err(
            "a restore needs --archive-mode=off: without it the copy pushes WAL into the original's stanza"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Input, vet};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn vet_in(a: &[&str], volumes: &[PathBuf]) -> Result<(), String> {
        let env = BTreeMap::new();
        let input = Input {
            volumes,
            ..Input::test(&env, false)
        };
        let argv: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        vet(&argv, &input).map(|_| ())
    }

    #[test]
    fn only_the_workloads_pgbackrest_runs_and_restores_only_into_its_volumes() {
        let vols = [PathBuf::from("/srv/restores")];
        for ok in [
            &["pgbackrest", "--stanza=main", "--type=incr", "backup"][..],
            &["pgbackrest", "--stanza=main", "--output=json", "info"],
            &[
                "pgbackrest",
                "--stanza=main",
                "--set=20260101-120000F_20260101-130000I",
                "--pg1-path=/srv/restores/pg",
                "--type=time",
                "--target=2026-01-01 12:30:00+00",
                "--target-action=promote",
                "--archive-mode=off",
                "restore",
            ],
            &[
                "pgbackrest",
                "--stanza=main",
                "--set=20260101-120000F",
                "expire",
            ],
        ] {
            vet_in(ok, &vols).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, why) in [
            (&["pgbackrest", "--cmd=/bin/sh", "backup"][..], "program"),
            (
                &["pgbackrest", "--config=/tmp/evil.conf", "backup"],
                "PGBACKREST_CONFIG",
            ),
            (
                &["pgbackrest", "--repo1-path=/tmp/loot", "backup"],
                "not one coffer knows",
            ),
            (
                &["pgbackrest", "--repo1-host=evil", "backup"],
                "not one coffer knows",
            ),
            (
                &["pgbackrest", "--lock-path=/etc", "backup"],
                "not one coffer knows",
            ),
            (
                &[
                    "pgbackrest",
                    "--pg1-path=/etc",
                    "--archive-mode=off",
                    "restore",
                ],
                "Workload volume",
            ),
            (
                &[
                    "pgbackrest",
                    "--pg1-path=/srv/restores/../../etc",
                    "--archive-mode=off",
                    "restore",
                ],
                "Workload volume",
            ),
            (
                &["pgbackrest", "--pg1-path=/srv/restores/pg", "restore"],
                "archive-mode=off",
            ),
            (
                &["pgbackrest", "--archive-mode=preserve", "restore"],
                "only --archive-mode=off",
            ),
            (
                &["pgbackrest", "--force", "--archive-mode=off", "restore"],
                "not empty",
            ),
            (&["pgbackrest", "archive-push"], "not allowed"),
            (&["pgbackrest", "stanza-delete"], "not allowed"),
            (&["pgbackrest", "--stanza=-x", "backup"], "letters"),
            // debug and trace print the options, and the process may hold a Profile's keys.
            (
                &["pgbackrest", "--log-level-console=debug", "backup"],
                "is not off, error, warn, info or detail",
            ),
            (
                &["pgbackrest", "--log-level-stderr=trace", "backup"],
                "is not off, error, warn, info or detail",
            ),
        ] {
            let e = vet_in(bad, &vols).expect_err(&format!("{bad:?} was allowed"));
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_workloads_configuration_and_stanza_go_on_the_command_line() {
        let env: BTreeMap<String, String> = [
            ("PGBACKREST_CONFIG", "/etc/pgbackrest/prod.conf"),
            ("PGBACKREST_STANZA", "prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let input = Input::test(&env, false);
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // A restored copy's restore_command holds only command-line options: both go there.
        let out = vet(&argv(&["pgbackrest", "--output=json", "info"]), &input).unwrap();
        assert_eq!(
            out.argv,
            argv(&[
                "pgbackrest",
                "--config=/etc/pgbackrest/prod.conf",
                "--stanza=prod",
                "--output=json",
                "info"
            ])
        );
        let out = vet(&argv(&["pgbackrest", "--stanza=prod", "check"]), &input).unwrap();
        assert_eq!(
            out.argv,
            argv(&[
                "pgbackrest",
                "--config=/etc/pgbackrest/prod.conf",
                "--stanza=prod",
                "check"
            ])
        );
        let e = vet(&argv(&["pgbackrest", "--stanza=other", "check"]), &input).unwrap_err();
        assert!(e.contains("the Workload pins stanza prod"), "{e}");
    }
}
