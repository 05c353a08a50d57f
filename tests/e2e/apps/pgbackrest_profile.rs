//! pgBackRest's repository on the Workload's Profile (`PGBACKREST_REPO1_TYPE: profile`): a
//! `file` Profile, and `s3` Profiles on s3s-fs (SigV4 checked) and on moto, both behind
//! HTTPS with a private CA (pgBackRest speaks only HTTPS to S3). PostgreSQL archives with
//! the archive_command `coffer describe workload` prints; backups land in the Profile's
//! storage; a restored copy recovers from it; a delete expires the set there.

use super::*;
use crate::pgbackrest::{insert, output, rows};
use coffer_tests::pgbackrest::{Repo, own};
use coffer_tests::postgres::Postgres;
use coffer_tests::s3::{Moto, S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs};
use coffer_tests::tls::{Pki, TlsProxy};
use std::path::PathBuf;

/// Where the test looks for pgBackRest's files: a directory, or moto's key listing.
enum Storage {
    Dir(PathBuf),
    Moto(Moto),
}

impl Storage {
    /// Whether backup set `label` of stanza main is in the Profile's storage.
    fn has_set(&self, label: &str) -> bool {
        let rel = format!("pgbackrest/db/backup/main/{label}/backup.manifest");
        match self {
            Storage::Dir(d) => d.join(rel).exists(),
            Storage::Moto(m) => m.keys("pgrepo").contains(&rel),
        }
    }
}

fn key_files(dir: &Path, id: &str, secret: &str) -> String {
    let (i, s) = (dir.join("key-id"), dir.join("key-secret"));
    std::fs::write(&i, id).unwrap();
    std::fs::write(&s, secret).unwrap();
    format!(
        "credentials: {{accessKeyId: {{file: {}}}, secretAccessKey: {{file: {}}}}}",
        i.display(),
        s.display()
    )
}

/// The whole round trip on one Profile; `profile` is its spec (YAML flow), `keys` what the
/// postgres user's pgbackrest.conf needs for archive_command and restore_command.
fn round_trip(profile: &str, keys: Option<(&str, &str)>, storage: Storage) {
    let mut pg = Postgres::start(None).unwrap();
    let repo = Repo::for_server(&mut pg);
    if let Some((id, secret)) = keys {
        let conf = std::fs::read_to_string(&repo.conf).unwrap().replace(
            "[global]\n",
            &format!("[global]\nrepo1-s3-key={id}\nrepo1-s3-key-secret={secret}\n"),
        );
        std::fs::write(&repo.conf, conf).unwrap();
    }
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql("app", "CREATE TABLE t (id int PRIMARY KEY, note text)")
        .unwrap();
    insert(&pg, 1, 1000);

    let c = cli();
    assert!(
        c.apply(&format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {{name: pgrepo}}\nspec: {profile}\n"
        ))
        .ok
    );
    let workload = repo
        .workload("db")
        .replace(
            "PGBACKREST_STANZA: main",
            "PGBACKREST_STANZA: main, PGBACKREST_REPO1_TYPE: profile",
        )
        .replace("  runAs:", "  profile: pgrepo\n  runAs:");
    assert!(c.apply(&workload).ok, "{workload}");

    // PostgreSQL archives where coffer's describe says.
    let described = c.ok(&["describe", "workload", "db"]).stdout;
    let archive = described
        .lines()
        .find_map(|l| l.trim().strip_prefix("archive_command = '"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no archive_command in:\n{described}"))
        .to_string();
    assert!(archive.contains("--repo1-path="), "{archive}");
    pg.reconfigure(&[("archive_command", &archive)]).unwrap();

    let full = c.run(&["backup", "db", "-o", "json"]);
    let full_label = output(&full, "label");
    assert!(full_label.ends_with('F'), "{full_label}");
    assert!(
        storage.has_set(&full_label),
        "set {full_label} is not in the Profile's storage"
    );

    insert(&pg, 1001, 2000);
    let incr = c.run(&["backup", "db", "-o", "json"]);
    let incr_rp = restore_point_of(&incr);
    let incr_label = output(&incr, "label");
    assert_eq!(output(&incr, "prior"), full_label);
    let at_incr = rows(&pg);
    pg.psql("app", "DROP TABLE t").unwrap();

    // The copy recovers from the Profile's storage: its restore_command names it.
    let into = repo.restores().join("copy");
    c.ok(&[
        "restore",
        "db",
        "--from",
        &incr_rp,
        "-p",
        &format!("pgPath={}", into.display()),
    ]);
    {
        let copy = Postgres::start_on(&into).unwrap();
        copy.wait_promoted().unwrap();
        assert_eq!(rows(&copy), at_incr);
    }

    // Nothing the plugin saw or logged holds the Profile's secret.
    if let Some((_, secret)) = keys {
        let a = incr.json()["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let d = c.ok(&["describe", "actionset", &a]).stdout;
        assert!(
            !d.contains(secret),
            "the secret key is in the ActionSet:\n{d}"
        );
    }

    c.ok(&["delete", &incr_rp]);
    assert!(
        !storage.has_set(&incr_label),
        "set {incr_label} was not expired"
    );
    assert!(storage.has_set(&full_label));
}

/// A directory postgres can reach, for a `file` Profile.
fn reachable_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("coffer-pgbr-store-")
        .tempdir_in("/tmp")
        .unwrap();
    own(d.path());
    d
}

#[test]
fn pgbackrest_repository_on_a_file_profile() {
    let store = reachable_dir();
    round_trip(
        &format!("{{type: file, path: {}}}", store.path().display()),
        None,
        Storage::Dir(store.path().to_path_buf()),
    );
}

#[test]
fn pgbackrest_repository_on_s3s_fs_over_https() {
    let s3 = S3sFs::start();
    let bucket = s3.create_bucket("pgrepo");
    let pki = Pki::new();
    let tls = TlsProxy::start(&pki, s3.port);
    let creds = key_files(pki.dir.path(), S3S_ACCESS_KEY, S3S_SECRET_KEY);
    let profile = |endpoint: &str| {
        format!(
            "{{type: s3, bucket: pgrepo, region: us-east-1, endpoint: '{endpoint}', caFile: {}, encryption: none, {creds}}}",
            pki.ca().display()
        )
    };
    // pgBackRest cannot speak plain http to S3: refused before anything runs.
    let c = cli();
    assert!(
        c.apply(&format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {{name: plain}}\nspec: {}\n",
            profile(&s3.endpoint())
        ))
        .ok
    );
    assert!(c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: plain-db}\nspec: {blueprint: pgbackrest, profile: plain, env: {PGBACKREST_REPO1_TYPE: profile}}\n").ok);
    fails_with(
        &c,
        &["backup", "plain-db"],
        "pgBackRest speaks only HTTPS to S3",
    );

    round_trip(
        &profile(&tls.endpoint()),
        Some((S3S_ACCESS_KEY, S3S_SECRET_KEY)),
        Storage::Dir(bucket),
    );
}

#[test]
fn pgbackrest_repository_on_moto_over_https() {
    let moto = Moto::start();
    moto.create_bucket("pgrepo", false);
    let pki = Pki::new();
    let tls = TlsProxy::start(&pki, moto.port);
    let creds = key_files(pki.dir.path(), "AKIDMOTO", "moto-secret-key");
    round_trip(
        &format!(
            "{{type: s3, bucket: pgrepo, region: us-east-1, endpoint: '{}', caFile: {}, encryption: none, {creds}}}",
            tls.endpoint(),
            pki.ca().display()
        ),
        Some(("AKIDMOTO", "moto-secret-key")),
        Storage::Moto(moto),
    );
}
