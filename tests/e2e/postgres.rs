//! End-to-end: the postgres-logical plugin through the `coffer` CLI against a real
//! PostgreSQL 15. Rows, schemas, sequences, large objects and roles must come back exactly.

use coffer_tests::cli::{Cli, Run};
use coffer_tests::postgres::Postgres;
use coffer_tests::{files_containing, files_under, random_hex};
use std::collections::BTreeMap;
use std::path::Path;

fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

/// A workload for `pg`, its password in a secret file (never inline).
fn workload_yaml(
    name: &str,
    pg: &Postgres,
    pwfile: Option<&Path>,
    extra_env: &[(&str, &str)],
) -> String {
    let mut env: Vec<String> = pg
        .env()
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\""))
        .collect();
    env.extend(extra_env.iter().map(|(k, v)| format!("    {k}: \"{v}\"")));
    let secrets = match pwfile {
        Some(f) => format!("  secrets:\n    password: {{file: {}}}\n", f.display()),
        None => String::new(),
    };
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  blueprint: postgres-logical\n  env:\n{}\n{secrets}",
        env.join("\n")
    )
}

const FIXTURE_SHOP: &str = r#"
CREATE ROLE app_reader LOGIN PASSWORD 'reader-pw';
CREATE SCHEMA sales;
CREATE TABLE sales.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, created timestamptz NOT NULL);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES sales.customers(id), total numeric(12,2), note text, tags text[], meta jsonb);
INSERT INTO sales.customers (name, email, created)
  SELECT (ARRAY['Zoë','東京','Łódź','🚀 rocket','O''Brien','naïve café'])[1 + g % 6] || ' ' || g, 'c' || g || '@example.com',
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
  FROM generate_series(1, 3000) g;
INSERT INTO sales.orders (customer_id, total, note, tags, meta)
  SELECT 1 + g % 3000, (g * 7919 % 100000) / 100.0, CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
         ARRAY['t' || g % 7, 'ü' || g % 3], jsonb_build_object('n', g, 'emoji', '✓')
  FROM generate_series(1, 20000) g;
CREATE VIEW sales.big_orders AS SELECT id, total FROM sales.orders WHERE total > 900;
CREATE SEQUENCE public.invoice_no START 1000;
SELECT nextval('public.invoice_no') FROM generate_series(1, 37);
CREATE TABLE public.docs (id int PRIMARY KEY, blob oid);
INSERT INTO public.docs VALUES (1, lo_from_bytea(0, convert_to(repeat('coffer large object ', 5000), 'UTF8')));
CREATE FUNCTION sales.order_count(c int) RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM sales.orders WHERE customer_id = c $$;
GRANT USAGE ON SCHEMA sales TO app_reader;
GRANT SELECT ON sales.customers TO app_reader;
"#;

const FIXTURE_ANALYTICS: &str = r#"
CREATE TABLE events (id int PRIMARY KEY, kind text, payload jsonb, at timestamptz);
INSERT INTO events SELECT g, 'kind' || g % 13, jsonb_build_object('v', g * 3), timestamptz '2025-06-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, 10000) g;
"#;

/// Everything we compare: per-table row checksums and counts, schema dumps, sequence,
/// large object, role, view and function results.
fn state(pg: &Postgres, dbs: &[&str]) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    for db in dbs {
        let tables = pg
            .psql(db, "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1")
            .unwrap();
        for t in tables.lines() {
            let sql = format!(
                "SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
            );
            s.insert(format!("{db}/{t}"), pg.psql(db, &sql).unwrap());
        }
        s.insert(format!("{db}/schema"), pg.schema(db).unwrap());
    }
    s.insert(
        "shop/sequence".into(),
        pg.psql("shop", "SELECT last_value FROM public.invoice_no")
            .unwrap(),
    );
    s.insert(
        "shop/large-object".into(),
        pg.psql("shop", "SELECT md5(lo_get(blob)) FROM public.docs")
            .unwrap(),
    );
    s.insert(
        "shop/view".into(),
        pg.psql("shop", "SELECT count(*), sum(total) FROM sales.big_orders")
            .unwrap(),
    );
    s.insert(
        "shop/function".into(),
        pg.psql("shop", "SELECT sales.order_count(42)").unwrap(),
    );
    s.insert(
        "role".into(),
        pg.psql(
            "postgres",
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'app_reader'",
        )
        .unwrap(),
    );
    s
}

/// A database name that is hostile to every place it goes: SQL, conninfo, object keys.
const ODD_DB: &str = "o'brien \"shop\"=1/../x";

fn setup_fixture(pg: &Postgres) {
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("postgres", "CREATE DATABASE analytics").unwrap();
    pg.psql("shop", FIXTURE_SHOP).unwrap();
    pg.psql("analytics", FIXTURE_ANALYTICS).unwrap();
}

fn password_file(pw: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), format!("{pw}\n")).unwrap();
    f
}

fn restore_point_of(run: &Run) -> String {
    let a = run.json();
    assert_eq!(a["status"]["phase"], "Completed", "{}", run.stdout);
    a["status"]["restorePoint"]
        .as_str()
        .expect("a backup names its RestorePoint")
        .to_string()
}

fn restore_points(c: &Cli) -> Vec<serde_json::Value> {
    c.ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn backup_drop_restore_gives_every_row_back() {
    let pw = format!("pw-{}", random_hex(12));
    let pg = Postgres::start(Some(&pw)).unwrap();
    setup_fixture(&pg);
    pg.psql(
        "postgres",
        "CREATE DATABASE \"o'brien \"\"shop\"\"=1/../x\"",
    )
    .unwrap();
    pg.psql(
        ODD_DB,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('odd'), ('names')",
    )
    .unwrap();
    let before = state(&pg, &["shop", "analytics", ODD_DB]);
    let pwfile = password_file(&pw);
    let c = cli();
    let applied = c.apply(&workload_yaml("shop-db", &pg, Some(pwfile.path()), &[]));
    assert!(applied.ok, "{}", applied.stderr);

    let backup = c.ok(&["backup", "shop-db", "-o", "json"]);
    let rp = restore_point_of(&backup);
    let rps = restore_points(&c);
    assert_eq!(rps.len(), 1);
    let artifacts: Vec<&str> = rps[0]["spec"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for want in [
        "globals",
        "database/shop",
        "database/analytics",
        "database/postgres",
    ] {
        assert!(
            artifacts.contains(&want),
            "artifact {want} missing from {artifacts:?}"
        );
    }

    // Destroy: both databases and the role.
    pg.psql("postgres", "DROP DATABASE shop").unwrap();
    pg.psql("postgres", "DROP DATABASE analytics").unwrap();
    pg.psql("postgres", "DROP DATABASE \"o'brien \"\"shop\"\"=1/../x\"")
        .unwrap();
    pg.psql("postgres", "DROP ROLE app_reader").unwrap();

    let restore = c.ok(&["restore", "shop-db", "--from", &rp, "-o", "json"]);
    assert_eq!(restore.json()["status"]["phase"], "Completed");
    let after = state(&pg, &["shop", "analytics", ODD_DB]);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k} differs after restore");
    }
    assert_eq!(before.len(), after.len());

    // The password never lands in the catalog, the location, or coffer's output.
    assert!(
        files_containing(c.home.path(), pw.as_bytes()).is_empty(),
        "password found in the state dir"
    );
    for r in [&backup, &restore] {
        assert!(
            !r.stdout.contains(&pw) && !r.stderr.contains(&pw),
            "password in coffer output"
        );
    }

    // Standard tools read the stored objects: zstd -d gives a pg_dump custom-format file.
    let shop = files_under(&c.location_dir())
        .into_iter()
        .find(|p| p.ends_with("databases/shop.pgdump.zst"))
        .expect("stored dump");
    let out = std::process::Command::new("zstd")
        .args(["-dc"])
        .arg(&shop)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.starts_with(b"PGDMP"),
        "not a pg_dump custom-format archive"
    );
    let manifest = files_under(&c.location_dir())
        .into_iter()
        .find(|p| p.ends_with("coffer-manifest.json"))
        .expect("manifest");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(m["metadata"]["name"], rp.as_str());
    assert_eq!(m["spec"]["objects"].as_array().unwrap().len(), 5);
}

#[test]
fn restore_into_another_database_and_delete_the_restore_point() {
    let pg = Postgres::start(None).unwrap();
    setup_fixture(&pg);
    let before = state(&pg, &["shop"]);
    let c = cli();
    assert!(c.apply(&workload_yaml("shop-db", &pg, None, &[])).ok);
    let rp = restore_point_of(&c.ok(&[
        "backup",
        "shop-db",
        "-p",
        r#"databases=["shop"]"#,
        "-o",
        "json",
    ]));

    // Two databases selected but one target name: refused in validate, nothing runs.
    let bad = c.run(&[
        "restore",
        "shop-db",
        "--from",
        &rp,
        "-p",
        "targetDatabase=copy",
        "-p",
        r#"databases=["shop","nope"]"#,
    ]);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("params.databases") && bad.stderr.contains("nope"),
        "{}",
        bad.stderr
    );

    c.ok(&[
        "restore",
        "shop-db",
        "--from",
        &rp,
        "-p",
        "targetDatabase=shop_copy",
        "-p",
        "globals=false",
    ]);
    let copy = pg.psql("shop_copy", "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY x::text)) FROM sales.orders x").unwrap();
    assert_eq!(Some(&copy), before.get("shop/sales.orders"));
    // The original is untouched.
    assert_eq!(
        state(&pg, &["shop"]).get("shop/sales.orders"),
        before.get("shop/sales.orders")
    );

    let deleted = c.ok(&["delete", &rp, "-o", "json"]);
    assert_eq!(deleted.json()["status"]["phase"], "Completed");
    assert!(restore_points(&c).is_empty());
    assert!(
        files_under(&c.location_dir()).is_empty(),
        "objects left after delete: {:?}",
        files_under(&c.location_dir())
    );
}

#[test]
fn postgres_down_fails_with_a_reason_and_no_restore_point() {
    let mut pg = Postgres::start(None).unwrap();
    let c = cli();
    assert!(c.apply(&workload_yaml("shop-db", &pg, None, &[])).ok);
    pg.stop();
    let r = c.run(&["backup", "shop-db", "-o", "json"]);
    assert!(!r.ok, "a backup of a stopped server must fail");
    let a = r.json();
    assert_eq!(a["status"]["phase"], "Failed");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(
        err.contains("psql") && (err.contains("connection") || err.contains("Connection refused")),
        "{err}"
    );
    assert!(r.stderr.contains("failed"), "{}", r.stderr);
    assert!(restore_points(&c).is_empty());
    assert!(files_under(&c.location_dir()).is_empty());
}

#[test]
fn pg_dump_dying_mid_stream_leaves_no_restore_point_and_no_objects() {
    let pg = Postgres::start(None).unwrap();
    setup_fixture(&pg);
    // A pg_dump that streams part of a real dump, then dies by SIGKILL.
    let wrap = tempfile::tempdir().unwrap();
    let script = wrap.path().join("pg_dump");
    std::fs::write(
        &script,
        "#!/bin/sh\n/usr/bin/pg_dump \"$@\" | head -c 30000\nkill -9 $$\n",
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", wrap.path().display());
    let c = cli();
    assert!(
        c.apply(&workload_yaml("shop-db", &pg, None, &[("PATH", &path)]))
            .ok
    );
    let r = c.run(&[
        "backup",
        "shop-db",
        "-p",
        r#"databases=["shop"]"#,
        "-o",
        "json",
    ]);
    assert!(!r.ok);
    let a = r.json();
    assert_eq!(a["status"]["phase"], "Failed");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(err.contains("pg_dump") && err.contains("signal 9"), "{err}");
    assert!(restore_points(&c).is_empty());
    let left = files_under(&c.location_dir());
    assert!(left.is_empty(), "partial objects left: {left:?}");
}

#[test]
fn a_corrupted_object_is_refused_before_anything_is_touched() {
    let pg = Postgres::start(None).unwrap();
    setup_fixture(&pg);
    let c = cli();
    assert!(c.apply(&workload_yaml("shop-db", &pg, None, &[])).ok);
    let rp = restore_point_of(&c.ok(&[
        "backup",
        "shop-db",
        "-p",
        r#"databases=["shop"]"#,
        "-o",
        "json",
    ]));
    let dump = files_under(&c.location_dir())
        .into_iter()
        .find(|p| p.ends_with("databases/shop.pgdump.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&dump, bytes).unwrap();

    pg.psql("shop", "DELETE FROM sales.orders WHERE id > 100")
        .unwrap();
    let r = c.run(&["restore", "shop-db", "--from", &rp, "-o", "json"]);
    assert!(!r.ok);
    let a = r.json();
    let err = a["status"]["error"].as_str().unwrap();
    assert!(
        err.contains("checksum mismatch") && err.contains("shop.pgdump.zst"),
        "{err}"
    );
    // Nothing ran against the database: the plugin was never called.
    assert!(
        a["status"]["audit"].as_array().is_none_or(|v| v.is_empty()),
        "{}",
        a["status"]["audit"]
    );
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM sales.orders")
            .unwrap(),
        "100"
    );
}

#[test]
fn bad_yaml_and_bad_params_name_the_field() {
    let pg = Postgres::start(None).unwrap();
    let c = cli();
    let bad = c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: shop-db}\nspec:\n  blueprint: postgres-logical\n  env: {PGPORT: [5432]}\n");
    assert!(!bad.ok);
    assert!(bad.stderr.contains("spec.env.PGPORT"), "{}", bad.stderr);
    let bad = c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: shop-db}\nspec:\n  blueprnt: postgres-logical\n");
    assert!(!bad.ok && bad.stderr.contains("blueprnt"), "{}", bad.stderr);
    assert!(
        c.ok(&["get", "workloads", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty(),
        "a bad file stored nothing"
    );

    assert!(c.apply(&workload_yaml("shop-db", &pg, None, &[])).ok);
    let r = c.run(&[
        "backup",
        "shop-db",
        "-p",
        "databses=[\"shop\"]",
        "-o",
        "json",
    ]);
    assert!(!r.ok);
    let a = r.json();
    assert_eq!(a["status"]["phase"], "Failed");
    let err = a["status"]["error"].as_str().unwrap();
    assert!(err.contains("databses"), "{err}");
    // Refused in validate: no process was started.
    assert!(
        !a["status"]["audit"]
            .as_array()
            .is_some_and(|v| v.iter().any(|e| e["capability"] == "exec.spawn"))
    );
    assert!(restore_points(&c).is_empty());

    let r = c.run(&["backup", "shop-db", "-p", "databases=[]"]);
    assert!(
        !r.ok && r.stderr.contains("params.databases"),
        "{}",
        r.stderr
    );
    let r = c.run(&["backup", "no-such-workload"]);
    assert!(
        !r.ok && r.stderr.contains("Workload no-such-workload not found"),
        "{}",
        r.stderr
    );
}

/// A restore never loses the database that is there: one that fails midway (a role the
/// archive needs was renamed) leaves it exactly as it was; one that succeeds swaps the
/// restored database in and keeps the replaced one, whose rows are the ones it had.
#[test]
fn a_failed_restore_leaves_the_original_and_a_good_one_keeps_it() {
    let pg = Postgres::start(None).unwrap();
    pg.psql("postgres", "CREATE ROLE app LOGIN").unwrap();
    pg.psql("postgres", "CREATE DATABASE shop OWNER app")
        .unwrap();
    pg.psql(
        "shop",
        "SET ROLE app; CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g",
    )
    .unwrap();
    let c = cli();
    assert!(c.apply(&workload_yaml("shop-db", &pg, None, &[])).ok);
    let rp = restore_point_of(&c.ok(&[
        "backup",
        "shop-db",
        "-p",
        r#"databases=["shop"]"#,
        "-p",
        "globals=false",
        "-o",
        "json",
    ]));
    // Later: rows changed, and the role the archive's objects belong to renamed.
    pg.psql(
        "shop",
        "DELETE FROM items WHERE id > 900; UPDATE items SET v = 'changed'",
    )
    .unwrap();
    pg.psql("postgres", "ALTER ROLE app RENAME TO app_renamed")
        .unwrap();
    let rows = "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM items x";
    let current = pg.psql("shop", rows).unwrap();

    let failed = c.run(&["restore", "shop-db", "--from", &rp, "-p", "globals=false"]);
    assert!(!failed.ok, "the restore should fail on the missing role");
    assert!(
        failed.stderr.contains("shop was left as it was")
            && failed.stderr.contains("role \"app\" does not exist"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        pg.psql("shop", rows).unwrap(),
        current,
        "the original changed"
    );
    let dbs = pg
        .psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
        )
        .unwrap();
    assert!(
        !dbs.contains("__restore_"),
        "a staging database was left: {dbs}"
    );

    // With the role back, the restore succeeds: the backup's rows in shop, the replaced
    // ones kept.
    pg.psql("postgres", "ALTER ROLE app_renamed RENAME TO app")
        .unwrap();
    let ok = c.ok(&[
        "restore",
        "shop-db",
        "--from",
        &rp,
        "-p",
        "globals=false",
        "-o",
        "json",
    ]);
    let previous = ok.json()["status"]["outputs"]["previous"]
        .as_str()
        .expect("the replaced database is named")
        .to_string();
    assert!(previous.starts_with("shop__previous_"), "{previous}");
    assert_eq!(
        pg.psql("shop", "SELECT count(*) || ':' || min(v) FROM items")
            .unwrap(),
        "1000:v1"
    );
    assert_eq!(pg.psql(&previous, rows).unwrap(), current);
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'"
        )
        .unwrap(),
        "app"
    );
}
