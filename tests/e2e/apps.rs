//! End-to-end: the mysql-logical, etcd and redis plugins through the `coffer` CLI against
//! real MariaDB 10.11, etcd 3.4 and Redis 7 servers. Restored data must equal the original;
//! a server that is down, bad credentials, a tool missing from PATH and bad params each fail
//! with a reason and record nothing.

use coffer_tests::cli::{Cli, Run};
use coffer_tests::random_hex;
use coffer_tests::servers::{Etcd, MariaDb, Redis};
use std::path::Path;

fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

/// A Workload YAML: blueprint, env, an optional password file, params per action (JSON).
fn workload(
    name: &str,
    blueprint: &str,
    env: &[(&str, &str)],
    pwfile: Option<&Path>,
    params: &str,
) -> String {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}: \"{v}\"")).collect();
    let secrets = pwfile
        .map(|f| format!("  secrets: {{password: {{file: {}}}}}\n", f.display()))
        .unwrap_or_default();
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  blueprint: {blueprint}\n  env: {{{}}}\n{secrets}  params: {params}\n",
        env.join(", ")
    )
}

fn password_file(dir: &Path, pw: &str) -> std::path::PathBuf {
    let f = dir.join(format!("pw-{}", random_hex(4)));
    std::fs::write(&f, format!("{pw}\n")).unwrap();
    f
}

fn restore_point_of(r: &Run) -> String {
    assert!(r.ok, "action failed:\n{}\n{}", r.stdout, r.stderr);
    r.json()["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn restore_point_count(c: &Cli) -> usize {
    c.ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .len()
}

/// The action fails, the message has `needle`, and no RestorePoint appeared.
fn fails_with(c: &Cli, args: &[&str], needle: &str) {
    let before = restore_point_count(c);
    let r = c.run(args);
    assert!(!r.ok, "coffer {args:?} succeeded:\n{}", r.stdout);
    assert!(
        r.stderr.contains(needle),
        "coffer {args:?}: expected {needle:?} in:\n{}",
        r.stderr
    );
    assert_eq!(
        restore_point_count(c),
        before,
        "a failed action recorded a RestorePoint"
    );
}

// ---------------------------------------------------------------- MariaDB

const SHOP: &str = r#"
CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE shop;
CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL, email VARCHAR(200) UNIQUE, photo BLOB, created DATETIME(6));
CREATE TABLE orders (id BIGINT PRIMARY KEY AUTO_INCREMENT, customer_id INT, total DECIMAL(12,2), note TEXT, meta JSON,
  FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB;
INSERT INTO customers (name, email, photo, created)
  SELECT CONCAT(ELT(1 + seq % 5, 'Zoë', '東京', 'Łódź', '🚀 rocket', 'O''Brien'), ' ', seq), CONCAT('c', seq, '@example.com'),
         UNHEX(SHA2(seq, 256)), TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE
  FROM seq_1_to_3000;
INSERT INTO orders (customer_id, total, note, meta)
  SELECT 1 + seq % 3000, (seq * 7919 % 100000) / 100, IF(seq % 5 = 0, NULL, MD5(seq)), JSON_OBJECT('n', seq, 'ok', '✓')
  FROM seq_1_to_20000;
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 900;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(50));
CREATE TRIGGER orders_ai AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (what) VALUES (CONCAT('order ', NEW.id));
CREATE PROCEDURE order_count(IN c INT) SELECT COUNT(*) FROM orders WHERE customer_id = c;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM audit;
CREATE DATABASE `o'brien db` CHARACTER SET latin1 COLLATE latin1_german1_ci;
CREATE TABLE `o'brien db`.`odd ``name``` (k VARCHAR(20) PRIMARY KEY, v VARCHAR(50));
INSERT INTO `o'brien db`.`odd ``name``` SELECT CONCAT('k', seq), CONCAT('Müller ', seq) FROM seq_1_to_500;
CREATE USER app@'%' IDENTIFIED BY 'app-pw';
GRANT SELECT, INSERT ON shop.* TO app@'%';
"#;

/// Everything compared: per-table checksum and count, routines, triggers, views, events,
/// database character sets, the app user's grants.
fn mysql_state(m: &MariaDb, dbs: &[&str]) -> Vec<String> {
    let mut s = Vec::new();
    for db in dbs {
        let q = db.replace('\'', "''");
        s.push(m.sql(&format!(
            "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{q}'"
        )));
        let tables = m.sql(&format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{q}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
        ));
        for t in tables.lines() {
            let qt = format!("`{}`.`{}`", db.replace('`', "``"), t.replace('`', "``"));
            s.push(
                m.sql(&format!("CHECKSUM TABLE {qt} EXTENDED"))
                    .replace(db, "DB"),
            );
            s.push(m.sql(&format!("SELECT COUNT(*) FROM {qt}")));
        }
        for what in [
            "ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA",
            "TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA",
            "TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA",
            "EVENT_NAME, EVENT_DEFINITION, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA",
        ] {
            s.push(
                m.sql(&format!("SELECT {what} = '{q}' ORDER BY 1"))
                    .replace(db, "DB"),
            );
        }
    }
    s
}

#[test]
fn mysql_backup_drop_restore_and_failures() {
    let pw = format!("root-{}", random_hex(6));
    let mut m = MariaDb::start(&pw);
    m.sql(SHOP);
    let dbs = ["shop", "o'brien db"];
    let before = mysql_state(&m, &dbs);
    let grants_before = m.sql("SHOW GRANTS FOR app@'%'");
    let work = tempfile::tempdir().unwrap();
    let pwf = password_file(work.path(), &pw);
    let c = cli();
    let port = m.port.to_string();
    // The Workload pins the server the password may go to; coffer passes it to
    // mariadb-dump (which ignores MYSQL_HOST) as --host/--port.
    let env = [
        ("MYSQL_HOST", "127.0.0.1"),
        ("MYSQL_TCP_PORT", port.as_str()),
    ];
    let params = "{backup: {user: root, users: true}, restore: {user: root}}".to_string();
    let params = params.as_str();
    assert!(
        c.apply(&workload("shop", "mysql-logical", &env, Some(&pwf), params))
            .ok
    );

    let rp = restore_point_of(&c.run(&["backup", "shop", "-o", "json"]));
    // The password never lands in the state dir.
    assert!(coffer_tests::files_containing(c.home.path(), pw.as_bytes()).is_empty());

    m.sql("DROP DATABASE shop; DROP DATABASE `o'brien db`; DROP USER app@'%'");
    c.ok(&["restore", "shop", "--from", &rp]);
    assert_eq!(mysql_state(&m, &dbs), before);
    assert_eq!(m.sql("SHOW GRANTS FOR app@'%'"), grants_before);

    // One database under another name: same rows, and the original is untouched.
    c.ok(&[
        "restore",
        "shop",
        "--from",
        &rp,
        "-p",
        "databases=[\"shop\"]",
        "-p",
        "targetDatabase=shop_copy",
    ]);
    let copy = mysql_state(&m, &["shop_copy"]);
    let orig = mysql_state(&m, &["shop"]);
    assert_eq!(copy[1..], orig[1..], "shop_copy differs from shop");

    // Bad params are refused in validate, before anything runs.
    fails_with(
        &c,
        &["backup", "shop", "-p", "databases=[]"],
        "params.databases",
    );
    fails_with(
        &c,
        &["backup", "shop", "-p", "databases=[\"nope\"]"],
        "\"nope\" does not exist",
    );
    fails_with(
        &c,
        &["restore", "shop", "--from", &rp, "-p", "targetDatabase=x"],
        "exactly one database",
    );
    // Bad credentials.
    let wrong = password_file(work.path(), "not-the-password");
    assert!(
        c.apply(&workload(
            "shop-badpw",
            "mysql-logical",
            &env,
            Some(&wrong),
            params
        ))
        .ok
    );
    fails_with(&c, &["backup", "shop-badpw"], "Access denied");
    // A tool missing from PATH.
    let nopath = [("PATH", "/nonexistent")];
    assert!(
        c.apply(&workload(
            "shop-nopath",
            "mysql-logical",
            &nopath,
            Some(&pwf),
            params
        ))
        .ok
    );
    fails_with(
        &c,
        &["backup", "shop-nopath"],
        "`mariadb` was not found on the PATH",
    );
    // The server down.
    m.stop();
    fails_with(&c, &["backup", "shop"], "Can't connect");
}

// ---------------------------------------------------------------- etcd

fn etcd_all(e: &Etcd) -> String {
    e.etcdctl(&["get", "", "--prefix"])
}

#[test]
fn etcd_snapshot_restore_to_new_data_dir_and_failures() {
    let mut e = Etcd::start();
    for batch in 0..10 {
        let mut txn = String::from("\n");
        for i in 0..100 {
            let k = batch * 100 + i;
            txn.push_str(&format!(
                "put /app/key-{k:04} \"value {k} ✓ {}\"\n",
                "x".repeat(k % 37)
            ));
        }
        // An empty line ends the success requests, another the (empty) failure ones.
        txn.push_str("\n\n");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ETCDCTL_API=3 etcdctl --endpoints={} txn",
                e.endpoint()
            ))
            .stdin_file(&txn);
        assert!(out.contains("SUCCESS"), "{out}");
    }
    e.etcdctl(&["put", "/config/empty", ""]);
    let before = etcd_all(&e);
    assert_eq!(
        before.lines().filter(|l| l.starts_with("/app/")).count(),
        1000
    );

    let c = cli();
    let params = format!("{{backup: {{endpoint: \"{}\"}}}}", e.endpoint());
    assert!(c.apply(&workload("kv", "etcd", &[], None, &params)).ok);
    let b = c.run(&["backup", "kv", "-o", "json"]);
    let rp = restore_point_of(&b);
    let out = &b.json()["status"]["outputs"];
    assert!(
        out["keys"].as_str().unwrap().parse::<u64>().unwrap() >= 1001,
        "{out}"
    );

    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("restored");
    c.ok(&[
        "restore",
        "kv",
        "--from",
        &rp,
        "-p",
        &format!("dataDir={}", data.display()),
    ]);
    let restored = Etcd::start_on(target, data.clone());
    assert_eq!(etcd_all(&restored), before);
    drop(restored);

    // Restoring over an existing directory is refused.
    let busy = tempfile::tempdir().unwrap();
    fails_with(
        &c,
        &[
            "restore",
            "kv",
            "--from",
            &rp,
            "-p",
            &format!("dataDir={}", busy.path().display()),
        ],
        "exists; etcd restores into a new directory",
    );
    // Bad params.
    fails_with(
        &c,
        &["backup", "kv", "-p", "endpoint=a:1,b:2"],
        "params.endpoint",
    );
    fails_with(
        &c,
        &["restore", "kv", "--from", &rp, "-p", "dataDir=relative/dir"],
        "must be an absolute path",
    );
    // A tool missing from PATH.
    assert!(
        c.apply(&workload(
            "kv-nopath",
            "etcd",
            &[("PATH", "/nonexistent")],
            None,
            &params
        ))
        .ok
    );
    fails_with(&c, &["backup", "kv-nopath"], "was not found on the PATH");
    // Bad credentials: auth on, a wrong password.
    e.etcdctl(&["user", "add", "root:right-pw"]);
    e.etcdctl(&["auth", "enable"]);
    let work = tempfile::tempdir().unwrap();
    let wrong = password_file(work.path(), "wrong-pw");
    // With a password, the Workload pins the endpoint it may go to.
    let auth_params = "{backup: {user: root}}";
    let pinned = [("ETCDCTL_ENDPOINTS", e.endpoint())];
    let pinned: Vec<(&str, &str)> = pinned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(
        c.apply(&workload(
            "kv-auth",
            "etcd",
            &pinned,
            Some(&wrong),
            auth_params
        ))
        .ok
    );
    fails_with(&c, &["backup", "kv-auth"], "authentication failed");
    let right = password_file(work.path(), "right-pw");
    assert!(
        c.apply(&workload(
            "kv-auth",
            "etcd",
            &pinned,
            Some(&right),
            auth_params
        ))
        .ok
    );
    // An endpoint the plugin is told to use that is not the pinned one is refused.
    fails_with(
        &c,
        &["backup", "kv-auth", "-p", "endpoint=127.0.0.1:1"],
        "pins ETCDCTL_ENDPOINTS",
    );
    restore_point_of(&c.run(&["backup", "kv-auth", "-o", "json"]));
    // The server down.
    e.stop();
    fails_with(&c, &["backup", "kv"], "is not healthy");
}

// ---------------------------------------------------------------- Redis

fn redis_fill(r: &Redis) {
    let script = "for i=1,5000 do redis.call('SET','k'..i, string.rep('v', i % 50)..i) end \
        for i=1,300 do redis.call('HSET','h'..i,'f','v'..i,'n',i) redis.call('RPUSH','l'..(i % 10), i) \
        redis.call('SADD','s', i) redis.call('ZADD','z', i, 'm'..i) end \
        redis.call('SET','bin', '\\0\\1\\2\\255') redis.call('PEXPIRE','k1', 86400000) return 1";
    r.cli(&["EVAL", script, "0"]);
}

fn redis_digest(r: &Redis) -> (String, String) {
    (r.cli(&["DEBUG", "DIGEST"]), r.cli(&["DBSIZE"]))
}

/// A Workload YAML with a `data` volume at `dir`.
fn with_data_volume(workload_yaml: String, dir: &Path) -> String {
    format!("{workload_yaml}  volumes: {{data: {}}}\n", dir.display())
}

#[test]
fn redis_rdb_backup_restore_and_failures() {
    let pw = format!("redis-{}", random_hex(6));
    let mut r = Redis::start(Some(&pw));
    redis_fill(&r);
    let before = redis_digest(&r);
    assert_eq!(before.1.trim(), "5313");
    let work = tempfile::tempdir().unwrap();
    let pwf = password_file(work.path(), &pw);
    let c = cli();
    // The Workload pins the server the password may go to; the restore's target is its
    // `data` volume.
    let port = r.port.to_string();
    let env = [("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", port.as_str())];
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_path_buf();
    let cache = |pwf: &Path, name: &str| {
        with_data_volume(workload(name, "redis", &env, Some(pwf), "{}"), &dir)
    };
    assert!(c.apply(&cache(&pwf, "cache")).ok);
    let rp = restore_point_of(&c.run(&["backup", "cache", "-o", "json"]));
    assert!(coffer_tests::files_containing(c.home.path(), pw.as_bytes()).is_empty());

    // Place the RDB in the data volume and start a server on it: the same dataset.
    c.ok(&["restore", "cache", "--from", &rp]);
    let mut restored = Redis::start_in(target, Some(&pw));
    assert_eq!(redis_digest(&restored), before);
    assert!(
        restored.cli(&["PTTL", "k1"]).trim().parse::<i64>().unwrap() > 0,
        "the TTL was lost"
    );
    // An existing RDB is not replaced unless asked.
    fails_with(
        &c,
        &["restore", "cache", "--from", &rp],
        "set params.overwrite",
    );
    restored.stop();
    c.ok(&["restore", "cache", "--from", &rp, "-p", "overwrite=true"]);

    // Another workload's restore point is restored into this one only when asked for, and
    // then it is the same dataset.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = with_data_volume(
        workload("cache-copy", "redis", &env, Some(&pwf), "{}"),
        copy_dir.path(),
    );
    assert!(c.apply(&copy).ok);
    fails_with(
        &c,
        &["restore", "cache-copy", "--from", &rp],
        "Pass --allow-other-workload",
    );
    assert!(std::fs::read_dir(copy_dir.path()).unwrap().next().is_none());
    let crossed = c.ok(&[
        "restore",
        "cache-copy",
        "--from",
        &rp,
        "--allow-other-workload",
    ]);
    assert!(
        crossed
            .stderr
            .contains("restoring another workload's restore point"),
        "{}",
        crossed.stderr
    );
    let copied = Redis::start_in(copy_dir, Some(&pw));
    assert_eq!(redis_digest(&copied), before);
    drop(copied);

    // Bad params.
    fails_with(&c, &["backup", "cache", "-p", "port=0"], "params.port");
    // A port other than the pinned one.
    fails_with(&c, &["backup", "cache", "-p", "port=1"], "pins REDIS_PORT");
    fails_with(
        &c,
        &["restore", "cache", "--from", &rp, "-p", "volume=elsewhere"],
        "no volume \"elsewhere\"",
    );
    fails_with(
        &c,
        &["restore", "cache", "--from", &rp, "-p", "dbFilename=../x"],
        "params.dbFilename",
    );
    let relative =
        workload("cache-rel", "redis", &env, Some(&pwf), "{}") + "  volumes: {data: rel/dir}\n";
    let r2 = c.apply(&relative);
    assert!(
        !r2.ok && r2.stderr.contains("must be an absolute path"),
        "{}",
        r2.stderr
    );
    // Bad credentials.
    let wrong = password_file(work.path(), "wrong");
    assert!(c.apply(&cache(&wrong, "cache-badpw")).ok);
    fails_with(&c, &["backup", "cache-badpw"], "WRONGPASS");
    // A tool missing from PATH.
    let nopath = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("PATH", "/nonexistent"),
    ];
    assert!(
        c.apply(&workload(
            "cache-nopath",
            "redis",
            &nopath,
            Some(&pwf),
            "{}"
        ))
        .ok
    );
    fails_with(
        &c,
        &["backup", "cache-nopath"],
        "`redis-cli` was not found on the PATH",
    );
    // The server down.
    r.stop();
    fails_with(&c, &["backup", "cache"], "Connection refused");
}

/// `sh -c` with a string on stdin; stdout.
trait StdinFile {
    fn stdin_file(&mut self, input: &str) -> String;
}

impl StdinFile for std::process::Command {
    fn stdin_file(&mut self, input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    }
}

/// `coffer plugin run`: a live trace of a real action, and `--dry-run`, which checks params
/// and grants and shows the calls without touching the workload.
#[test]
fn plugin_run_traces_live_and_dry_run_touches_nothing() {
    let r = Redis::start(None);
    r.cli(&["SET", "k", "v"]);
    let c = cli();
    let params = format!("{{backup: {{port: {}}}}}", r.port);
    assert!(c.apply(&workload("cache", "redis", &[], None, &params)).ok);

    let run = c.run(&["plugin", "run", "builtin:redis", "backup", "-w", "cache"]);
    assert!(run.ok, "{}", run.stderr);
    for want in [
        "exec.spawn",
        "redis-cli --no-auth-warning -p",
        "transfer.put",
        "dump.rdb",
    ] {
        assert!(
            run.stderr.contains(want),
            "{want} missing from the trace:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.contains("RestorePoint cache-"), "{}", run.stdout);
    assert_eq!(restore_point_count(&c), 1);
    let sets_before = c
        .ok(&["get", "actionsets", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .len();

    let dry = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache",
        "--dry-run",
    ]);
    assert!(dry.ok, "{}\n{}", dry.stdout, dry.stderr);
    for want in [
        "grants (the Blueprint's)",
        "redis-cli --no-auth-warning",
        "allowed",
        "exec.spawn",
        "simulated result",
    ] {
        assert!(dry.stdout.contains(want), "{want} missing:\n{}", dry.stdout);
    }
    // Nothing recorded, nothing stored.
    assert_eq!(restore_point_count(&c), 1);
    assert_eq!(
        c.ok(&["get", "actionsets", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        sets_before
    );

    // Bad params are refused by the plugin's validate().
    let bad = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache",
        "--dry-run",
        "-p",
        "port=0",
    ]);
    assert!(
        !bad.ok && bad.stderr.contains("params.port"),
        "{}",
        bad.stderr
    );

    // A restore needs a restore point, and the error says which flag gives it.
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["plugin", "run", "builtin:redis", "restore", "-w", "cache"];
        args.extend_from_slice(extra);
        let r = c.run(&args);
        assert!(
            !r.ok && r.stderr.contains("--from RESTOREPOINT"),
            "{}",
            r.stderr
        );
    }

    // A Blueprint that does not grant what the plugin needs: the dry run says so.
    let narrow = "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {name: redis-narrow}\nspec:\n  plugin: {builtin: redis}\n  grants: {exec: [\"redis-check-rdb **\"], location: [read, write, delete], secrets: [password]}\n";
    assert!(c.apply(narrow).ok);
    assert!(
        c.apply(&workload("cache2", "redis-narrow", &[], None, &params))
            .ok
    );
    let denied = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache2",
        "--dry-run",
    ]);
    assert!(!denied.ok);
    assert!(
        denied.stdout.contains("denied (not granted)"),
        "{}",
        denied.stdout
    );
    // The simulation runs under the Blueprint's grants: the refused call is shown refused
    // (never "ok" first), and the outcome is not a success.
    let refused_line = denied
        .stdout
        .lines()
        .find(|l| l.contains("exec.spawn") && l.contains("redis-cli"))
        .unwrap_or_else(|| panic!("no redis-cli call in:\n{}", denied.stdout));
    assert!(
        refused_line.contains("denied") && refused_line.ends_with("<- DENIED"),
        "{}",
        denied.stdout
    );
    assert!(
        !denied.stdout.contains("simulated result: ok"),
        "{}",
        denied.stdout
    );
    assert!(
        denied.stderr.contains("would be denied by the Blueprint"),
        "{}",
        denied.stderr
    );
    // ... and --grant-declared lets the real run go through while the Blueprint is written.
    let dev = c.run(&[
        "plugin",
        "run",
        "builtin:redis",
        "backup",
        "-w",
        "cache2",
        "--grant-declared",
    ]);
    assert!(dev.ok, "{}", dev.stderr);
}

/// A MariaDB restore never loses the database that is there: a replay that fails midway
/// (a view needs a function of another database that is gone) leaves it exactly as it was; a good one swaps the
/// restored tables in, with their trigger, view and routine, and keeps the replaced ones.
#[test]
fn mysql_a_failed_restore_leaves_the_original_and_a_good_one_keeps_it() {
    let pw = format!("root-{}", random_hex(6));
    let m = MariaDb::start(&pw);
    m.sql(SHOP);
    let work = tempfile::tempdir().unwrap();
    let pwf = password_file(work.path(), &pw);
    let c = cli();
    let port = m.port.to_string();
    let env = [
        ("MYSQL_HOST", "127.0.0.1"),
        ("MYSQL_TCP_PORT", port.as_str()),
    ];
    let params = "{backup: {user: root, databases: [shop]}, restore: {user: root}}";
    assert!(
        c.apply(&workload("shop", "mysql-logical", &env, Some(&pwf), params))
            .ok
    );
    // A view that needs a function of another database, which will be gone by restore time.
    const LIB: &str = "CREATE DATABASE lib; CREATE FUNCTION lib.double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;";
    m.sql(LIB);
    m.sql("CREATE VIEW shop.doubled AS SELECT lib.double_it(id) AS d FROM shop.orders;");
    let backed_up = mysql_state(&m, &["shop"]);
    let rp = restore_point_of(&c.run(&["backup", "shop", "-o", "json"]));
    m.sql("DELETE FROM shop.audit; DELETE FROM shop.orders WHERE id > 100; UPDATE shop.customers SET name = 'changed';");
    m.sql("DROP DATABASE lib;");
    let current = mysql_state(&m, &["shop"]);

    let failed = c.run(&["restore", "shop", "--from", &rp]);
    assert!(!failed.ok, "the replay should fail on the missing function");
    assert!(
        failed.stderr.contains("shop was left as it was"),
        "{}",
        failed.stderr
    );
    assert_eq!(mysql_state(&m, &["shop"]), current, "the original changed");
    assert!(
        !m.sql("SHOW DATABASES").contains("__restore_"),
        "a staging database was left"
    );

    m.sql(LIB);
    let ok = c.run(&["restore", "shop", "--from", &rp, "-o", "json"]);
    assert!(ok.ok, "{}", ok.stderr);
    let previous = ok.json()["status"]["outputs"]["previous"]
        .as_str()
        .expect("the replaced database is named")
        .to_string();
    // Rows, trigger, view, routine and event as backed up; the replaced ones kept whole.
    assert_eq!(mysql_state(&m, &["shop"]), backed_up);
    let mut kept = mysql_state(&m, &[previous.as_str()]);
    let mut was = current.clone();
    kept.remove(0);
    was.remove(0);
    assert_eq!(kept, was, "{previous} is not what shop was");
}
