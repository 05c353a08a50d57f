//! GCS on fake-gcs-server: a Profile whose endpoint is the emulator (and one whose key names
//! it), `coffer profile validate`, a large object through resumable upload, encrypted,
//! verified, restored byte for byte and deleted; a scheme-less endpoint, a missing bucket,
//! a key that is not a key and a server that is down each fail with one line that names the
//! fix.

use super::common::*;
use coffer_tests::s3::FakeGcs;

fn profile(name: &str, extra: &str, key: &std::path::Path, keys: &Keys) -> String {
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {{name: {name}}}\nspec:\n  type: gcs\n  bucket: backups\n  prefix: prod\n  retries: 1\n  retryTimeout: 3s\n{extra}  credentials: {{serviceAccountKey: {{file: {}}}}}\n  encryption: {{recipients: [{}], identity: {{file: {}}}}}\n",
        key.display(),
        keys.recipient,
        keys.identity().display()
    )
}

#[test]
fn gcs_on_fake_gcs_server_round_trip_and_errors_that_name_the_fix() {
    let mut gcs = FakeGcs::start();
    gcs.create_bucket("backups");
    let c = cli();
    setup(&c);
    let work = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let key = work.path().join("sa.json");
    std::fs::write(&key, gcs.key_json()).unwrap();
    let applied = c.apply(&format!(
        "{}---\n{}",
        profile(
            "gcs",
            &format!("  endpoint: {}\n", gcs.endpoint()),
            &key,
            &keys
        ),
        // No endpoint: the key's gcs_base_url, plain HTTP allowed because it says http://.
        profile("gcs-key", "", &key, &keys)
    ));
    assert!(applied.ok, "{}", applied.stderr);
    for p in ["gcs", "gcs-key"] {
        let v = c.ok(&["profile", "validate", p, "-o", "json"]).json();
        assert_eq!(v["ok"], true, "{p}: {v:#}");
    }

    // 40 MiB: more than one part of a resumable upload.
    let (src, sum) = data_file(work.path(), 40 << 20);
    let rp = restore_point_of(&backup(
        &c,
        "gcs",
        &["mode=file", &format!("path={}", src.display())],
    ));
    let objects = gcs.objects("backups");
    for want in [
        format!("prod/restorepoints/files/{rp}/file.bin.zst.age"),
        format!("prod/restorepoints/files/{rp}/coffer-manifest.json"),
    ] {
        assert!(objects.contains(&want), "{want} not in {objects:?}");
    }
    c.ok(&["verify", &rp]);
    let dst = work.path().join("restored.bin");
    restore_file(&c, &rp, &dst);
    assert_eq!(sha256_file(&dst), sum);
    c.ok(&["delete", &rp]);
    assert!(
        gcs.objects("backups").iter().all(|o| !o.contains(&rp)),
        "{:?}",
        gcs.objects("backups")
    );

    // The server killed in the middle of an upload: the backup fails, nothing is recorded,
    // and nothing of it is left once the server is back.
    let before = restore_points(&c).len();
    let child = spawn_stream_backup(&c, "gcs", 2_000_000_000);
    wait_until("20 MB uploaded", || {
        c.run(&["get", "actionsets", "-o", "json"])
            .json()
            .as_array()
            .is_some_and(|a| {
                a.iter().any(|s| {
                    s["status"]["phase"] == "Running"
                        && s["status"]["bytes"].as_u64() > Some(20 << 20)
                })
            })
    });
    gcs.kill();
    let (a, _) = failed_actionset(child);
    let failed_prefix = a["status"]["prefix"].as_str().unwrap().to_string();
    assert_eq!(
        restore_points(&c).len(),
        before,
        "a failed backup was recorded"
    );
    gcs.restart();
    let (src2, sum2) = data_file(work.path(), 5 << 20);
    let rp2 = restore_point_of(&backup(
        &c,
        "gcs",
        &["mode=file", &format!("path={}", src2.display())],
    ));
    c.ok(&["verify", &rp2]);
    let dst2 = work.path().join("back2.bin");
    restore_file(&c, &rp2, &dst2);
    assert_eq!(sha256_file(&dst2), sum2);
    assert!(
        gcs.objects("backups")
            .iter()
            .all(|o| !o.contains(&failed_prefix)),
        "objects of the failed backup remain: {:?}",
        gcs.objects("backups")
    );

    // An endpoint without a scheme is refused at apply, saying how to write it.
    let r = c.apply(&profile(
        "no-scheme",
        &format!("  endpoint: 127.0.0.1:{}\n", gcs.port),
        &key,
        &keys,
    ));
    assert!(
        !r.ok
            && r.stderr
                .contains("is not an http(s) URL; write it like https://"),
        "{}",
        r.stderr
    );
    // A key that is not a key.
    let junk = work.path().join("junk.json");
    std::fs::write(&junk, "not json").unwrap();
    let r = c.apply(&profile("junk", "", &junk, &keys));
    assert!(
        !r.ok && r.stderr.contains("is not a service-account key"),
        "{}",
        r.stderr
    );
    // A missing bucket, and a server that is down: validate names the cause.
    assert!(
        c.apply(
            &profile(
                "gcs",
                &format!("  endpoint: {}\n", gcs.endpoint()),
                &key,
                &keys
            )
            .replace("bucket: backups", "bucket: absent")
            .replace("name: gcs}", "name: gcs-absent}")
        )
        .ok
    );
    let v = c.run(&["profile", "validate", "gcs-absent"]);
    assert!(!v.ok);
    assert!(
        v.stdout.contains("does not exist: create it"),
        "{}",
        v.stdout
    );
    gcs.kill();
    let v = c.run(&["profile", "validate", "gcs"]);
    assert!(!v.ok);
    assert!(v.stdout.contains("cannot be reached"), "{}", v.stdout);
}

#[test]
fn a_postgres_backup_on_gcs_restores_the_same_rows() {
    use coffer_tests::postgres::Postgres;
    const CHECK: &str =
        "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x";
    let gcs = FakeGcs::start();
    gcs.create_bucket("backups");
    let c = cli();
    let work = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let key = work.path().join("sa.json");
    std::fs::write(&key, gcs.key_json()).unwrap();
    let pg = Postgres::start(Some("gcs-pw")).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    )
    .unwrap();
    let pw = work.path().join("pw");
    std::fs::write(&pw, "gcs-pw\n").unwrap();
    let env: Vec<String> = pg
        .env()
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\""))
        .collect();
    let applied = c.apply(&format!(
        "{}---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: shop-db}}\nspec:\n  blueprint: postgres-logical\n  profile: gcs\n  params: {{backup: {{databases: [shop], globals: false}}}}\n  env:\n{}\n  secrets:\n    password: {{file: {}}}\n",
        profile("gcs", &format!("  endpoint: {}\n", gcs.endpoint()), &key, &keys),
        env.join("\n"),
        pw.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let original = pg.psql("shop", CHECK).unwrap();
    let rp = c.ok(&["backup", "shop-db", "-o", "json"]).json()["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        gcs.objects("backups").contains(&format!(
            "prod/restorepoints/shop-db/{rp}/coffer-manifest.json"
        )),
        "{:?}",
        gcs.objects("backups")
    );
    c.ok(&["verify", &rp]);
    pg.psql("shop", "DELETE FROM orders WHERE id % 3 = 0")
        .unwrap();
    assert_ne!(pg.psql("shop", CHECK).unwrap(), original);
    c.ok(&["restore", "shop-db", "--from", &rp]);
    assert_eq!(pg.psql("shop", CHECK).unwrap(), original);
}
