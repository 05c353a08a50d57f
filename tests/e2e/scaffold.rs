//! `coffer plugin new` makes a crate outside the workspace that builds for wasm32-wasip2,
//! passes its own cases, and backs up and restores a real PostgreSQL through `coffer`.

use coffer_tests::cli::Cli;
use coffer_tests::postgres::Postgres;
use std::path::Path;

#[test]
fn a_scaffolded_plugin_builds_passes_its_cases_and_round_trips_postgres() {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("pg-pipe");
    // A shared target dir (compile cache between runs), which the scaffold must honour.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let made = c
        .command()
        .args(["plugin", "new", "pg-pipe", "--dir", dir.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let wasm = target.join("wasm32-wasip2/release/pg_pipe.wasm");
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(said.contains(wasm.to_str().unwrap()), "{said}");
    let blueprint = std::fs::read_to_string(dir.join("blueprint.yaml")).unwrap();
    assert!(blueprint.contains(wasm.to_str().unwrap()), "{blueprint}");
    for f in [
        "Cargo.toml",
        "manifest.json",
        "src/lib.rs",
        "tests/cases.yaml",
        "blueprint.yaml",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // A name that is not a DNS label, and an existing directory, are refused.
    assert!(!c.run(&["plugin", "new", "Bad_Name"]).ok);
    let again = c.run(&["plugin", "new", "pg-pipe", "--dir", dir.to_str().unwrap()]);
    assert!(
        !again.ok && again.stderr.contains("is not empty"),
        "{}",
        again.stderr
    );

    // Build it as its README says, with the same CARGO_TARGET_DIR.
    let mut build = coffer_tests::cargo();
    build
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&dir);
    build.env("CARGO_TARGET_DIR", &target);
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wasm.exists(), "{} was not built", wasm.display());

    // Its own cases pass.
    let t = c.ok(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        dir.join("tests/cases.yaml").to_str().unwrap(),
    ]);
    assert!(t.stdout.contains("6 passed, 0 failed"), "{}", t.stdout);

    // And it protects a real database.
    let pw = "scaffold-pw";
    let pg = Postgres::start(Some(pw)).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2)); INSERT INTO items SELECT g, 'item ' || g || ' ✓', g * 1.25 FROM generate_series(1, 5000) g").unwrap();
    let sum = "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM items x";
    let before = pg.psql("shop", sum).unwrap();
    let pwfile = work.path().join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    assert!(
        c.ok(&["apply", "-f", dir.join("blueprint.yaml").to_str().unwrap()])
            .stdout
            .contains("blueprint pg-pipe")
    );
    let env: Vec<String> = pg
        .env()
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    let workload = format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: shop}}\nspec:\n  blueprint: pg-pipe\n  env: {{{}}}\n  secrets: {{password: {{file: {}}}}}\n  params:\n    backup: {{command: [pg_dump, --format=plain, --no-owner, shop]}}\n    restore: {{command: [psql, -X, -q, -v, ON_ERROR_STOP=1, -d, shop]}}\n",
        env.join(", "),
        pwfile.display()
    );
    assert!(c.apply(&workload).ok);
    let b = c.ok(&["backup", "shop", "-o", "json"]);
    let rp = b.json()["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string();
    pg.psql("shop", "DROP TABLE items").unwrap();
    c.ok(&["restore", "shop", "--from", &rp]);
    assert_eq!(pg.psql("shop", sum).unwrap(), before);
}
