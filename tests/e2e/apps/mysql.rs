//! mysql-logical against MariaDB 10.11.

use super::*;

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
