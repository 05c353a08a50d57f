//! `rds` with `mode: dump`: moto plays RDS's API (DescribeDBInstances gives the engine, the
//! master user and an endpoint no one can reach), and `endpointOverride` sends the dump to a
//! real PostgreSQL 15 or MariaDB instead. A backup dumps every database in the logical
//! plugins' format; after a DROP, the restore brings the rows back into the live server; the
//! password goes only to the server the Workload pins, and lands in no file.

use super::cli;
use super::rds::rds;
use coffer_tests::cli::Cli;
use coffer_tests::postgres::{PGBIN, Postgres};
use coffer_tests::s3::{Moto, xml_all};
use coffer_tests::servers::MariaDb;
use coffer_tests::{files_containing, random_hex};

/// The Signer `aws` (keys in files), and Workload `db` on Blueprint rds with `env` pinned, the
/// password in a file, and `params`.
fn setup(moto: &Moto, c: &Cli, env: &[(&str, String)], password: &str, params: &str) {
    let dir = c.home.path().join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("id"), "AKIDCOFFERTEST").unwrap();
    std::fs::write(dir.join("secret"), "coffer-rds-test-secret").unwrap();
    std::fs::write(dir.join("db-password"), format!("{password}\n")).unwrap();
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}: \"{v}\"")).collect();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {{name: aws}}\nspec:\n  type: aws-sigv4\n  region: us-east-1\n  endpoint: {e}\n  credentials:\n    accessKeyId: {{file: {d}/id}}\n    secretAccessKey: {{file: {d}/secret}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: db}}\nspec:\n  blueprint: rds\n  env: {{{env}}}\n  secrets: {{password: {{file: {d}/db-password}}}}\n  params: {params}\n",
        e = moto.endpoint(),
        d = dir.display(),
        env = env.join(", "),
    ));
    assert!(applied.ok, "{}", applied.stderr);
}

fn restore_points(c: &Cli) -> usize {
    c.ok(&["get", "restorepoints", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .len()
}

const SHOP: &str = "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int); INSERT INTO orders SELECT g, 'item-' || g, g % 7 FROM generate_series(1, 500) g";

fn orders(pg: &Postgres, db: &str) -> String {
    pg.psql(db, "SELECT id, item, qty FROM orders ORDER BY id")
        .unwrap()
}

#[test]
fn a_postgres_instance_is_dumped_through_its_endpoint_and_loaded_back_into_it() {
    let moto = Moto::start();
    let pw = format!("pg-{}", random_hex(8));
    let pg = Postgres::start(Some(&pw)).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("postgres", "CREATE DATABASE \"o'brien db\"")
        .unwrap();
    pg.psql("shop", SHOP).unwrap();
    pg.psql("o'brien db", SHOP).unwrap();
    let before = (orders(&pg, "shop"), orders(&pg, "o'brien db"));
    let created = rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.micro&Engine=postgres&EngineVersion=15.4&AllocatedStorage=20&MasterUsername=postgres&MasterUserPassword=unused123",
    );
    assert!(created.contains("<Engine>postgres</Engine>"), "{created}");
    let at = format!("127.0.0.1:{}", pg.port);
    let params = format!(
        "{{backup: {{instance: shop, region: us-east-1, apiEndpoint: {e}, mode: dump, endpointOverride: \"{at}\"}}, restore: {{endpointOverride: \"{at}\"}}}}",
        e = moto.endpoint()
    );

    // Without the Workload pinning the server, the host hands the password to no process.
    let c = cli();
    setup(&moto, &c, &[], &pw, &params);
    let r = c.run(&["backup", "db"]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("PGHOST: 127.0.0.1, PGPORT: {}", pg.port)),
        "{}",
        r.stderr
    );
    assert_eq!(restore_points(&c), 0);

    let port = pg.port.to_string();
    setup(
        &moto,
        &c,
        &[("PGHOST", "127.0.0.1".into()), ("PGPORT", port.clone())],
        &pw,
        &params,
    );
    let b = c.ok(&["backup", "db", "-o", "json"]).json();
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    assert_eq!(st["outputs"]["engine"], "postgres");
    let dbs = st["outputs"]["databases"].as_str().unwrap();
    assert!(dbs.contains("shop") && dbs.contains("o'brien db"), "{dbs}");
    let rp = st["restorePoint"].as_str().unwrap().to_string();
    // The master user came from DescribeDBInstances; the password is in no file coffer wrote.
    let set = c.ok(&[
        "describe",
        "actionset",
        b["metadata"]["name"].as_str().unwrap(),
    ]);
    assert!(
        set.stdout.contains("action=DescribeDBInstances status=200"),
        "{}",
        set.stdout
    );
    assert!(
        files_containing(c.home.path(), pw.as_bytes())
            .iter()
            .all(|f| f.ends_with("db-password"))
    );

    // Lose data, restore: the rows are the originals, in the live server.
    pg.psql("shop", "DROP TABLE orders").unwrap();
    pg.psql("o'brien db", "DELETE FROM orders WHERE id > 10")
        .unwrap();
    let r = c.ok(&["restore", "db", "--from", &rp, "-o", "json"]).json();
    assert_eq!(r["status"]["phase"], "Completed", "{r:#}");
    assert_eq!(r["status"]["outputs"]["instance"], "shop");
    assert_eq!((orders(&pg, "shop"), orders(&pg, "o'brien db")), before);

    // One database under another name, the live one untouched.
    pg.psql("shop", "UPDATE orders SET qty = 0").unwrap();
    c.ok(&[
        "restore",
        "db",
        "--from",
        &rp,
        "-p",
        "databases=[\"shop\"]",
        "-p",
        "targetDatabase=shop_copy",
    ]);
    assert_eq!(orders(&pg, "shop_copy"), before.0);
    assert_ne!(orders(&pg, "shop"), before.0);

    // Snapshot-only params are refused for a dump before anything runs.
    let r = c.run(&["restore", "db", "--from", &rp, "-p", "swap=true"]);
    assert!(!r.ok && r.stderr.contains("params.swap"), "{}", r.stderr);

    // Deleting the restore point removes its objects; RDS is not called for a snapshot.
    c.ok(&["delete", &rp]);
    assert_eq!(restore_points(&c), 0);
    assert!(
        coffer_tests::files_under(&c.location_dir())
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".pgdump")),
        "{:?}",
        coffer_tests::files_under(&c.location_dir())
    );
}

#[test]
fn a_mariadb_instance_is_dumped_and_loaded_back_and_bad_endpoints_are_refused() {
    let moto = Moto::start();
    let pw = format!("my-{}", random_hex(8));
    let m = MariaDb::start(&pw);
    m.sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, item varchar(40)); INSERT INTO shop.orders VALUES (1, 'tea'), (2, 'crème brûlée'), (3, NULL)");
    let before = m.sql("SELECT * FROM shop.orders ORDER BY id");
    rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=store&DBInstanceClass=db.t3.micro&Engine=mariadb&EngineVersion=10.11&AllocatedStorage=20&MasterUsername=root&MasterUserPassword=unused123",
    );
    let at = format!("127.0.0.1:{}", m.port);
    let c = cli();
    let params = |over: &str| {
        format!(
            "{{backup: {{instance: store, region: us-east-1, apiEndpoint: {e}, mode: dump, endpointOverride: \"{over}\"}}, restore: {{endpointOverride: \"{at}\"}}}}",
            e = moto.endpoint()
        )
    };
    let env = [
        ("MYSQL_HOST", "127.0.0.1".to_string()),
        ("MYSQL_TCP_PORT", m.port.to_string()),
    ];

    // An endpoint that is not host:port fails before anything runs.
    setup(&moto, &c, &env, &pw, &params("127.0.0.1:5432 --host=evil"));
    let r = c.run(&["backup", "db"]);
    assert!(
        !r.ok && r.stderr.contains("params.endpointOverride"),
        "{}",
        r.stderr
    );
    // One the Workload does not pin gets no password.
    setup(&moto, &c, &env, &pw, &params("127.0.0.2:3306"));
    let r = c.run(&["backup", "db"]);
    assert!(
        !r.ok && r.stderr.contains("MYSQL_HOST: 127.0.0.2"),
        "{}",
        r.stderr
    );
    assert_eq!(restore_points(&c), 0);

    setup(&moto, &c, &env, &pw, &params(&at));
    let b = c.ok(&["backup", "db", "-o", "json"]).json();
    assert_eq!(b["status"]["outputs"]["engine"], "mariadb", "{b:#}");
    assert_eq!(b["status"]["outputs"]["databases"], "shop", "{b:#}");
    let rp = b["status"]["restorePoint"].as_str().unwrap().to_string();
    m.sql("DROP DATABASE shop");
    c.ok(&["restore", "db", "--from", &rp]);
    assert_eq!(m.sql("SELECT * FROM shop.orders ORDER BY id"), before);
}

/// The instances moto has, and the snapshots coffer made that are still there.
fn leftovers(moto: &Moto) -> (Vec<String>, Vec<String>) {
    let instances = xml_all(
        &rds(moto, "Action=DescribeDBInstances"),
        "DBInstanceIdentifier",
    );
    let mut snapshots = xml_all(
        &rds(moto, "Action=DescribeDBSnapshots"),
        "DBSnapshotIdentifier",
    );
    snapshots.retain(|s| s.starts_with("coffer-"));
    (instances, snapshots)
}

/// A session holding an ACCESS EXCLUSIVE lock on `shop.orders` until dropped: a pg_dump of
/// shop waits on it, mid-dump.
struct TableLock(std::process::Child);

impl TableLock {
    fn take(pg: &Postgres, pw: &str) -> TableLock {
        use std::io::Write;
        let mut child = std::process::Command::new(format!("{PGBIN}/psql"))
            .envs(pg.env())
            .env("PGPASSWORD", pw)
            .args(["-X", "-q", "-d", "shop"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;").unwrap();
        stdin.flush().unwrap();
        wait_for(
            pg,
            "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'orders'::regclass AND granted",
        );
        TableLock(child)
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `count_sql` in shop until it counts more than 0 (at most a minute).
fn wait_for(pg: &Postgres, count_sql: &str) {
    for _ in 0..600 {
        if pg.psql("shop", count_sql).unwrap() != "0" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("never true: {count_sql}");
}

const DUMP_WAITING: &str = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'";

#[test]
fn from_snapshot_dumps_a_temporary_instance_that_never_outlives_the_backup() {
    let moto = Moto::start();
    let pw = format!("pg-{}", random_hex(8));
    let pg = Postgres::start(Some(&pw)).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", SHOP).unwrap();
    rds(
        &moto,
        "Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.t3.micro&Engine=postgres&EngineVersion=15.4&AllocatedStorage=20&MasterUsername=postgres&MasterUserPassword=unused123",
    );
    let c = cli();
    // moto's temporary instance has no reachable endpoint: the override plays it.
    setup(
        &moto,
        &c,
        &[
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", pg.port.to_string()),
        ],
        &pw,
        &format!(
            "{{backup: {{instance: shop, region: us-east-1, apiEndpoint: {e}, mode: dump, fromSnapshot: true, endpointOverride: \"127.0.0.1:{p}\"}}, restore: {{endpointOverride: \"127.0.0.1:{p}\"}}}}",
            e = moto.endpoint(),
            p = pg.port
        ),
    );

    // It works: the dump is of the copy, and the copy and its snapshot are gone after.
    let b = c.ok(&["backup", "db", "-o", "json"]).json();
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    let temp = st["outputs"]["dumpedInstance"].as_str().unwrap();
    assert!(temp.starts_with("shop-dump-"), "{temp}");
    assert!(
        st["outputs"]["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("coffer-shop-")
    );
    assert_eq!(leftovers(&moto), (vec!["shop".to_string()], vec![]));
    let guards = st["guards"].as_array().unwrap();
    assert_eq!(guards.len(), 2, "{b:#}");
    for g in guards {
        assert_eq!(g["state"], "Fired", "{g:#}");
        assert_eq!(g["firedBy"], "plugin", "{g:#}");
        assert!(
            g["request"]["body"]
                .as_str()
                .unwrap()
                .contains("Action=Delete"),
            "{g:#}"
        );
    }
    let rp = st["restorePoint"].as_str().unwrap().to_string();
    pg.psql("shop", "DELETE FROM orders").unwrap();
    c.ok(&["restore", "db", "--from", &rp]);
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM orders").unwrap(),
        "500"
    );

    // The dump dies mid-stream (its server session killed): the backup fails, records
    // nothing, and the guards delete the copy and its snapshot as the action ends.
    let lock = TableLock::take(&pg, &pw);
    let run = c
        .command()
        .args(["backup", "db"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pg, DUMP_WAITING);
    assert_eq!(
        leftovers(&moto).0.len(),
        2,
        "the temporary instance exists mid-dump"
    );
    pg.psql(
        "shop",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_dump'",
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(!out.status.success());
    drop(lock);
    assert_eq!(restore_points(&c), 1);
    assert_eq!(leftovers(&moto), (vec!["shop".to_string()], vec![]));
    let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
    let failed = sets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"]["phase"] == "Failed")
        .unwrap();
    for g in failed["status"]["guards"].as_array().unwrap() {
        assert_eq!(
            (g["state"].as_str(), g["firedBy"].as_str()),
            (Some("Fired"), Some("end")),
            "{g:#}"
        );
    }

    // coffer itself is killed mid-dump: the next coffer command sends the guards' requests.
    let lock = TableLock::take(&pg, &pw);
    let mut run = c.command().args(["backup", "db"]).spawn().unwrap();
    wait_for(&pg, DUMP_WAITING);
    assert_eq!(leftovers(&moto).0.len(), 2);
    run.kill().unwrap();
    run.wait().unwrap();
    pg.psql(
        "shop",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_dump'",
    )
    .unwrap();
    drop(lock);
    let sets = c.ok(&["get", "actionsets", "-o", "json"]).json();
    assert_eq!(leftovers(&moto), (vec!["shop".to_string()], vec![]));
    let killed = sets
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"]["phase"] == "Failed")
        .find(|s| s["status"]["guards"][0]["firedBy"] == "recovery")
        .unwrap_or_else(|| panic!("{sets:#}"));
    assert!(
        killed["status"]["error"]
            .as_str()
            .unwrap()
            .contains("delete temporary instance"),
        "{killed:#}"
    );
    assert_eq!(restore_points(&c), 1);
}
