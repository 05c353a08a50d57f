//! `PGBACKREST_REPO1_TYPE: profile` in a local Workload's env: pgBackRest's repo1 is the
//! Workload's Profile — a `file` Profile's directory, or an `s3` Profile's bucket — under
//! `pgbackrest/<workload>`, so one storage setup serves coffer and pgBackRest.
//!
//! The host, not the plugin, says where the repository is: the locating options become
//! the Workload's env (and, through the pgbackrest policy, command-line flags, which
//! pgBackRest writes into a restored copy's `restore_command`). The Profile's keys go only
//! into the env of the pgBackRest processes coffer starts, never into argv or a file, and
//! are redacted from what the plugin sees.
//!
//! pgBackRest cannot read what coffer's own pipeline would have made of the data, so a
//! Profile that encrypts with age or locks objects is refused (pgBackRest has its own
//! `repo1-cipher-type`); it speaks only HTTPS to S3, so a plain-http endpoint is refused.

use crate::credentials::Credentials;
use crate::model::{EncryptionSpec, Profile, ProfileType, Workload};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The env entry that asks for it, and the value.
pub const SWITCH: &str = "PGBACKREST_REPO1_TYPE";
pub const PROFILE: &str = "profile";

/// Where repo1 is, for one Workload.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRepo {
    /// pgBackRest's locating options, by their env names (no secrets).
    pub env: BTreeMap<String, String>,
    /// A `file` Profile's directory for the repository, made (owned by `spec.runAs`)
    /// before the first process starts.
    pub dir: Option<PathBuf>,
    /// Where it is, for people: `/srv/backups/pgbackrest/db`, `s3://bucket/pgbackrest/db`.
    pub url: String,
    /// The repository needs keys (s3 with shared keys).
    pub keyed: bool,
}

/// Whether Workload `w` asks for its Profile as pgBackRest's repo1.
pub fn wanted(w: &Workload) -> bool {
    w.spec.env.get(SWITCH).is_some_and(|v| v == PROFILE)
}

/// Where repo1 is for Workload `w` on Profile `p`, or why `p` cannot hold it.
pub fn locate(w: &Workload, p: &Profile) -> Result<ProfileRepo, String> {
    let name = p.name();
    let spec = &p.spec;
    let refuse = |why: &str| {
        Err(format!(
            "Workload {}: {SWITCH}=profile points pgBackRest at Profile {name}, but {why}",
            w.name()
        ))
    };
    if matches!(spec.encryption, Some(EncryptionSpec::Age(_))) {
        return refuse(
            "that Profile encrypts with age, which pgBackRest cannot read: use a Profile with `encryption: none` and pgBackRest's own encryption (repo1-cipher-type=aes-256-cbc, repo1-cipher-pass in the postgres user's pgbackrest.conf)",
        );
    }
    if spec.object_lock.is_some() {
        return refuse(
            "that Profile locks objects, and pgBackRest must delete and rewrite files in its repository (expire, archive info): use a Profile without objectLock",
        );
    }
    let mut tail: Vec<&str> = spec
        .prefix
        .as_deref()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .into_iter()
        .collect();
    tail.extend(["pgbackrest", w.name()]);
    let rel = tail.join("/");
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(format!("PGBACKREST_REPO1_{k}"), v);
    };
    let (dir, url, keyed) = match spec.kind {
        ProfileType::File => {
            let Some(root) = &spec.path else {
                return refuse("it has no spec.path");
            };
            let dir = root.join(&rel);
            set("TYPE", "posix".into());
            set("PATH", dir.display().to_string());
            (Some(dir.clone()), dir.display().to_string(), false)
        }
        ProfileType::S3 => {
            let Some(bucket) = &spec.bucket else {
                return refuse("it has no spec.bucket");
            };
            let region = crate::storage::open::s3_region(spec);
            set("TYPE", "s3".into());
            set("PATH", format!("/{rel}"));
            set("S3_BUCKET", bucket.clone());
            set("S3_REGION", region.clone());
            match &spec.endpoint {
                Some(ep) => {
                    let u = url::Url::parse(ep)
                        .map_err(|e| format!("Profile {name}: endpoint {ep:?}: {e}"))?;
                    if u.scheme() != "https" {
                        return refuse(&format!(
                            "pgBackRest speaks only HTTPS to S3 and the endpoint is {ep}: give the Profile an https:// endpoint (and spec.caFile for a private CA)"
                        ));
                    }
                    if !matches!(u.path(), "" | "/") {
                        return refuse(&format!(
                            "its endpoint {ep} has a path, which pgBackRest cannot use: give scheme, host and port only"
                        ));
                    }
                    let Some(host) = u.host_str() else {
                        return refuse(&format!("its endpoint {ep} has no host"));
                    };
                    set("S3_ENDPOINT", host.to_string());
                    if let Some(port) = u.port() {
                        set("STORAGE_PORT", port.to_string());
                    }
                }
                None => set("S3_ENDPOINT", format!("s3.{region}.amazonaws.com")),
            }
            let path_style = spec.path_style.unwrap_or(spec.endpoint.is_some());
            set(
                "S3_URI_STYLE",
                if path_style { "path" } else { "host" }.into(),
            );
            if let Some(ca) = &spec.ca_file {
                set("STORAGE_CA_FILE", ca.display().to_string());
            }
            let shared = spec
                .credentials
                .as_ref()
                .is_some_and(|c| c.access_key_id.is_some())
                || std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
            if !shared {
                // The instance's role, as coffer's own S3 client would find it.
                set("S3_KEY_TYPE", "auto".into());
            }
            (None, format!("s3://{bucket}/{rel}"), shared)
        }
        ProfileType::Gcs | ProfileType::Azure => {
            return refuse(&format!(
                "a {} Profile cannot be pgBackRest's repository through coffer yet (file and s3 can): configure repo1 in pgbackrest.conf instead",
                spec.kind.as_str()
            ));
        }
    };
    Ok(ProfileRepo {
        env,
        dir,
        url,
        keyed,
    })
}

/// The keys of Profile `p` as pgBackRest reads them from its env: the Profile's
/// credentials, else coffer's own AWS_* variables (what its S3 client uses).
pub fn keys(p: &Profile, credentials: &Credentials) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if p.spec.kind != ProfileType::S3 {
        return Ok(out);
    }
    let name = p.name();
    let creds = p.spec.credentials.clone().unwrap_or_default();
    let read = |field: &str, r: &Option<crate::model::SecretRef>| {
        r.as_ref()
            .map(|r| credentials.read(&format!("Profile {name}: spec.credentials.{field}"), r))
            .transpose()
    };
    let (id, secret, token) = match read("accessKeyId", &creds.access_key_id)? {
        Some(id) => (
            Some(id),
            read("secretAccessKey", &creds.secret_access_key)?,
            read("sessionToken", &creds.session_token)?,
        ),
        None => (
            std::env::var("AWS_ACCESS_KEY_ID").ok(),
            std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
            std::env::var("AWS_SESSION_TOKEN").ok(),
        ),
    };
    if let Some(id) = id {
        let secret = secret.ok_or_else(|| {
            format!("Profile {name}: an access key id without its secret access key")
        })?;
        out.insert("PGBACKREST_REPO1_S3_KEY".into(), id);
        out.insert("PGBACKREST_REPO1_S3_KEY_SECRET".into(), secret);
        if let Some(t) = token {
            out.insert("PGBACKREST_REPO1_S3_TOKEN".into(), t);
        }
    }
    Ok(out)
}

/// What PostgreSQL needs to archive into the repository (`coffer describe workload`).
pub fn postgres_settings(w: &Workload, repo: &ProfileRepo) -> Vec<String> {
    let mut env = w.spec.env.clone();
    env.extend(repo.env.clone());
    let mut cmd = vec!["pgbackrest".to_string()];
    for (var, flag) in super::policy::PGBACKREST_PINS {
        match env.get(*var) {
            Some(v) => cmd.push(format!("{flag}={}", shell_word(v))),
            None if *var == "PGBACKREST_STANZA" => cmd.push(format!("{flag}=STANZA")),
            None => {}
        }
    }
    cmd.push("archive-push".into());
    cmd.push("%p".into());
    let mut lines = vec![
        format!(
            "pgBackRest repo1 is Profile {}'s storage: {}",
            w.spec.profile.as_deref().unwrap_or("default"),
            repo.url
        ),
        "PostgreSQL (postgresql.conf, then restart):".into(),
        "  archive_mode = on".into(),
        format!(
            "  archive_command = '{}'",
            cmd.join(" ").replace('\'', "''")
        ),
    ];
    if !w.spec.env.contains_key("PGBACKREST_STANZA") {
        lines.push("STANZA: the stanza of your pgbackrest.conf; pin it with PGBACKREST_STANZA in the Workload's spec.env".into());
    }
    if repo.keyed {
        lines.push("PostgreSQL runs archive_command, and a restored copy its restore_command, without coffer: give the user that runs PostgreSQL the Profile's keys in its pgbackrest.conf ([global] repo1-s3-key=…, repo1-s3-key-secret=…, mode 0600). coffer passes them to its own runs through the environment only.".into());
    }
    if repo.dir.is_some() {
        lines.push(
            "coffer makes the directory, owned by spec.runAs, before its first action.".into(),
        );
    }
    lines
}

/// `v` as one shell word: unchanged when plain, else double-quoted.
fn shell_word(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+".contains(&b))
    {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, ProfileSpec, WorkloadSpec};

    fn workload(env: &str) -> Workload {
        let spec: WorkloadSpec = serde_yaml_ng::from_str(&format!(
            "{{blueprint: pgbackrest, profile: p, env: {env}}}"
        ))
        .unwrap();
        Workload::new(Kind::Workload, "db", spec)
    }

    fn profile(yaml: &str) -> Profile {
        let spec: ProfileSpec = serde_yaml_ng::from_str(yaml).unwrap();
        Profile::new(Kind::Profile, "p", spec)
    }

    #[test]
    fn a_file_profile_is_a_directory_of_the_workload() {
        let w = workload("{PGBACKREST_REPO1_TYPE: profile, PGBACKREST_STANZA: main}");
        assert!(wanted(&w));
        let r = locate(&w, &profile("{type: file, path: /srv/b, prefix: /team/}")).unwrap();
        assert_eq!(r.env["PGBACKREST_REPO1_TYPE"], "posix");
        assert_eq!(r.env["PGBACKREST_REPO1_PATH"], "/srv/b/team/pgbackrest/db");
        assert_eq!(r.dir, Some(PathBuf::from("/srv/b/team/pgbackrest/db")));
        let s = postgres_settings(&w, &r).join("\n");
        assert!(
            s.contains("archive_command = 'pgbackrest --stanza=main --repo1-type=posix --repo1-path=/srv/b/team/pgbackrest/db archive-push %p'"),
            "{s}"
        );
    }

    #[test]
    fn an_s3_profile_is_a_path_in_its_bucket_over_https_only() {
        let w = workload("{PGBACKREST_REPO1_TYPE: profile}");
        let r = locate(
            &w,
            &profile("{type: s3, bucket: b, region: eu-west-1, endpoint: 'https://127.0.0.1:9443', caFile: /etc/ca.pem, encryption: none, credentials: {accessKeyId: {env: X}, secretAccessKey: {env: Y}}}"),
        )
        .unwrap();
        assert_eq!(r.env["PGBACKREST_REPO1_S3_ENDPOINT"], "127.0.0.1");
        assert_eq!(r.env["PGBACKREST_REPO1_STORAGE_PORT"], "9443");
        assert_eq!(r.env["PGBACKREST_REPO1_S3_URI_STYLE"], "path");
        assert_eq!(r.env["PGBACKREST_REPO1_PATH"], "/pgbackrest/db");
        assert_eq!(r.env["PGBACKREST_REPO1_STORAGE_CA_FILE"], "/etc/ca.pem");
        assert!(r.keyed && r.dir.is_none());
        assert!(r.env.keys().all(|k| !k.contains("KEY")), "{:?}", r.env);
        let s = postgres_settings(&w, &r).join("\n");
        assert!(
            s.contains("--stanza=STANZA") && s.contains("repo1-s3-key-secret"),
            "{s}"
        );

        let e = |yaml: &str| locate(&w, &profile(yaml)).unwrap_err();
        assert!(e("{type: s3, bucket: b, endpoint: 'http://127.0.0.1:9'}").contains("only HTTPS"));
        assert!(
            e("{type: s3, bucket: b, encryption: {recipients: [age1x]}}")
                .contains("encrypts with age")
        );
        assert!(e("{type: gcs, bucket: b}").contains("configure repo1 in pgbackrest.conf"));
        assert!(
            e("{type: s3, bucket: b, objectLock: {mode: governance, days: 1}}")
                .contains("locks objects")
        );
    }

    #[test]
    fn keys_come_from_the_profile_only_as_env() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("COFFER_TEST_PGBR_KEY", "AKIDPGBR") };
        unsafe { std::env::set_var("COFFER_TEST_PGBR_SECRET", "s3cr3t") };
        let p = profile(
            "{type: s3, bucket: b, credentials: {accessKeyId: {env: COFFER_TEST_PGBR_KEY}, secretAccessKey: {env: COFFER_TEST_PGBR_SECRET}}}",
        );
        let k = keys(&p, &Credentials::local()).unwrap();
        assert_eq!(k["PGBACKREST_REPO1_S3_KEY"], "AKIDPGBR");
        assert_eq!(k["PGBACKREST_REPO1_S3_KEY_SECRET"], "s3cr3t");
    }

    #[test]
    fn odd_values_are_quoted_for_the_shell() {
        assert_eq!(shell_word("/srv/b"), "/srv/b");
        assert_eq!(shell_word("/srv/my b"), "\"/srv/my b\"");
        assert_eq!(shell_word("a$b`c\"d"), "\"a\\$b\\`c\\\"d\"");
    }
}
