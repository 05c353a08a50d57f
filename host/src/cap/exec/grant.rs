//! What exec may start: argv patterns (each led by the environment names it allows) and,
//! for task pods, image globs. Both the manifest and the Blueprint must allow a call.

use crate::cap::{Grant, Grants};
use crate::wit::WitError;
use coffer_manifest::Capabilities;

pub struct ExecGrant(Grant<Capabilities>);

impl ExecGrant {
    pub fn new(grants: &Grants) -> ExecGrant {
        ExecGrant(Grant::new(grants, |c| Capabilities {
            exec: c.exec.clone(),
            images: c.images.clone(),
            ..Default::default()
        }))
    }

    /// argv must match a declared pattern and a granted pattern, each of which also allows
    /// every environment variable the process is given (`env`: name and value, or `None`
    /// for a secret's).
    pub fn check(&self, argv: &[String], env: &[(&str, Option<&str>)]) -> Result<(), WitError> {
        let program = argv.first().map(String::as_str).unwrap_or("");
        if program.is_empty() {
            return Err(WitError::InvalidArgument("exec: argv is empty".into()));
        }
        self.0.check(
            |c| c.exec_pattern_for(argv, env).is_some(),
            || {
                let mut what = format!(
                    "exec of `{program}` with {} argument(s)",
                    argv.len().saturating_sub(1)
                );
                if !env.is_empty() {
                    let names: Vec<&str> = env.iter().map(|(n, _)| *n).collect();
                    what.push_str(&format!(" and environment {}", names.join(", ")));
                }
                what
            },
            "exec",
        )
    }

    pub fn check_image(&self, image: &str) -> Result<(), WitError> {
        self.0.check(
            |c| {
                c.images
                    .iter()
                    .any(|p| coffer_manifest::glob_matches(p, image))
            },
            || format!("a task pod with image {image}"),
            "images",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(declared: &[&str], granted: &[&str]) -> ExecGrant {
        let caps = |p: &[&str]| Capabilities {
            exec: p.iter().map(|s| s.to_string()).collect(),
            images: vec!["docker.io/library/postgres:*".into()],
            ..Default::default()
        };
        ExecGrant::new(&Grants {
            declared: caps(declared),
            granted: caps(granted),
            plugin: "p".into(),
            blueprint: "bp".into(),
        })
    }

    #[test]
    fn argv_and_environment_must_match_both_sides() {
        let g = grant(
            &["PGPASSWORD=* pg_dump --format=custom **", "psql **"],
            &["PGPASSWORD=* pg_dump --format=custom --dbname=*"],
        );
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let secret = [("PGPASSWORD", None)];
        for (args, env, outcome) in [
            ("pg_dump --format=custom --dbname=shop", &secret[..], Ok(())),
            ("pg_dump --format=custom --dbname=shop", &[][..], Ok(())),
            (
                "pg_dump --format=custom --dbname=shop --file=x",
                &secret[..],
                Err("not granted by Blueprint bp"),
            ),
            (
                "psql -c select",
                &[][..],
                Err("not granted by Blueprint bp"),
            ),
            (
                "rm -rf /",
                &[][..],
                Err("not declared in plugin p's manifest"),
            ),
            (
                "pg_dump --format=custom --dbname=shop",
                &[("PGHOST", Some("evil"))][..],
                Err("environment PGHOST"),
            ),
            ("", &[][..], Err("argv is empty")),
        ] {
            match (g.check(&argv(args), env), outcome) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(want)) => {
                    let text = crate::cap::error_text(&e);
                    assert!(text.contains(want), "{args}: {text}")
                }
                (got, want) => panic!("{args}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn task_pod_images_match_globs() {
        let g = grant(&[], &[]);
        assert!(g.check_image("docker.io/library/postgres:16").is_ok());
        assert!(g.check_image("docker.io/library/busybox:1").is_err());
    }
}
