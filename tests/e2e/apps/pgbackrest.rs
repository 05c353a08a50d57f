//! pgBackRest 2.45 against PostgreSQL 15 with WAL archiving, through the `pgbackrest`
//! Blueprint: full and incremental sets, restore of exactly a set, point-in-time restore,
//! in place, expire, verify.

use super::*;
use coffer_tests::pgbackrest::Repo;
use coffer_tests::postgres::Postgres;
use std::path::PathBuf;

/// (count, sum) of table t.
pub(crate) fn rows(pg: &Postgres) -> String {
    pg.psql(
        "app",
        "SELECT count(*) || ',' || coalesce(sum(id), 0) FROM t",
    )
    .unwrap()
}

pub(crate) fn insert(pg: &Postgres, from: u32, to: u32) {
    pg.psql(
        "app",
        &format!("INSERT INTO t SELECT g, md5(g::text) FROM generate_series({from}, {to}) g"),
    )
    .unwrap();
}

pub(crate) fn output(r: &Run, key: &str) -> String {
    assert!(r.ok, "action failed:\n{}\n{}", r.stdout, r.stderr);
    r.json()["status"]["outputs"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no output {key}: {}", r.stdout))
        .to_string()
}

#[test]
fn pgbackrest_sets_restore_exactly_and_to_a_point_in_time() {
    let mut pg = Postgres::start(None).unwrap();
    let repo = Repo::for_server(&mut pg);
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql("app", "CREATE TABLE t (id int PRIMARY KEY, note text)")
        .unwrap();
    insert(&pg, 1, 1000);

    let c = cli();
    assert!(c.apply(&repo.workload("db")).ok);
    // The first backup makes the stanza and, with no full yet, a full set.
    let full = c.run(&["backup", "db", "-o", "json"]);
    let full_rp = restore_point_of(&full);
    let full_label = output(&full, "label");
    assert_eq!(output(&full, "type"), "full");
    assert!(full_label.ends_with('F'), "{full_label}");
    assert_eq!(repo.labels(), vec![full_label.clone()]);

    insert(&pg, 1001, 2000);
    let incr = c.run(&["backup", "db", "-o", "json"]);
    let incr_rp = restore_point_of(&incr);
    let incr_label = output(&incr, "label");
    assert_eq!(output(&incr, "type"), "incr");
    assert_eq!(output(&incr, "prior"), full_label);
    assert!(output(&incr, "lsnStop").contains('/'));
    let at_incr = rows(&pg);
    assert_eq!(at_incr, format!("2000,{}", 2000 * 2001 / 2));

    // Two commits a second apart, and a moment between them.
    insert(&pg, 2001, 2500);
    let at_between = rows(&pg);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = pg
        .psql(
            "postgres",
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    insert(&pg, 2501, 3000);
    // check switches WAL and waits until it is archived: the second commit is in the repo.
    repo.pgbackrest(&["check"]);
    pg.psql("app", "DROP TABLE t").unwrap();

    // Exactly the incremental set, into a new directory.
    let restores = repo.restores();
    let exact = restores.join("incr");
    let r = c.run(&[
        "restore",
        "db",
        "--from",
        &incr_rp,
        "-o",
        "json",
        "-p",
        &format!("pgPath={}", exact.display()),
    ]);
    assert_eq!(output(&r, "label"), incr_label);
    let archived_before = repo.info()["archive"][0]["max"].clone();
    {
        let copy = Postgres::start_on(&exact).unwrap();
        copy.wait_promoted().unwrap();
        assert_eq!(rows(&copy), at_incr);
        // The copy never pushes WAL into the original's stanza.
        assert_eq!(copy.psql("postgres", "SHOW archive_mode").unwrap(), "off");
        insert(&copy, 5001, 6000);
        copy.psql("postgres", "SELECT pg_switch_wal()").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    assert_eq!(repo.info()["archive"][0]["max"], archived_before);

    // To the moment between the two commits: exactly the rows of the first.
    let pitr = restores.join("pitr");
    c.ok(&[
        "restore",
        "db",
        "--from",
        &incr_rp,
        "-p",
        &format!("pgPath={}", pitr.display()),
        "-p",
        &format!("target={{\"time\": \"{between}\"}}"),
    ]);
    {
        let copy = Postgres::start_on(&pitr).unwrap();
        copy.wait_promoted().unwrap();
        assert_eq!(rows(&copy), at_between);
        assert_eq!(at_between, format!("2500,{}", 2500 * 2501 / 2));
    }

    // Refused: a directory that is not empty, one outside the Workload's volumes, a time
    // before the set ended, a target with two kinds.
    let busy = exact.display().to_string();
    for (params, needle) in [
        (vec![format!("pgPath={busy}")], "is not empty"),
        (
            vec!["pgPath=/var/tmp/pg-restore".to_string()],
            "a restore goes into a Workload volume",
        ),
        (
            vec![
                format!("pgPath={}", restores.join("early").display()),
                "target={\"time\": \"2020-01-01T00:00:00Z\"}".to_string(),
            ],
            "before backup set",
        ),
        (
            vec![
                format!("pgPath={}", restores.join("two").display()),
                "target={\"xid\": \"5\", \"lsn\": \"0/1\"}".to_string(),
            ],
            "exactly one of time, lsn, xid, name",
        ),
    ] {
        let mut args = vec!["restore", "db", "--from", &incr_rp];
        for p in &params {
            args.extend(["-p", p.as_str()]);
        }
        let r = c.run(&args);
        assert!(!r.ok, "{params:?} was allowed");
        assert!(r.stderr.contains(needle), "{params:?}: {}", r.stderr);
    }
    assert!(!restores.join("early").exists());

    // In place: refused while the server runs; with it stopped, --delta over its own data.
    let r = c.run(&["restore", "db", "--from", &incr_rp, "-p", "inPlace=true"]);
    assert!(!r.ok);
    assert!(r.stderr.contains("PostgreSQL is running"), "{}", r.stderr);
    pg.stop();
    c.ok(&["restore", "db", "--from", &incr_rp, "-p", "inPlace=true"]);
    {
        let back = Postgres::start_on(&pg.data_dir()).unwrap();
        back.wait_promoted().unwrap();
        assert_eq!(rows(&back), at_incr);
    }

    // verify: the set and the full it builds on are valid.
    c.ok(&["verify", &incr_rp]);

    // delete: the full is the base of the incremental, so it stays until that goes.
    let r = c.run(&["delete", &full_rp]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains(&format!("is the base of {incr_label}")),
        "{}",
        r.stderr
    );
    assert!(repo.labels().contains(&full_label));
    c.ok(&["delete", &incr_rp]);
    assert_eq!(repo.labels(), vec![full_label.clone()]);
    let gone = c.run(&["get", "restorepoints", "-o", "json"]);
    assert!(!gone.stdout.contains(&incr_rp));

    // A damaged file in the full set: verify fails and says what pgBackRest found.
    let set_dir = repo
        .dir
        .path()
        .join(format!("repo/backup/main/{full_label}/pg_data/base"));
    let victim = walk_files(&set_dir)
        .into_iter()
        .max_by_key(|f| f.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let r = c.run(&["verify", &full_rp]);
    assert!(!r.ok, "verify passed a damaged set");
    assert!(r.stderr.contains("status: invalid"), "{}", r.stderr);

    // The dashboard's Verify: coffer's objects are sound, and the plugin's own check (an
    // ActionSet) finds what pgBackRest found.
    let failed = dashboard_verify(&c, &full_rp);
    assert_eq!(failed["status"]["phase"], "Failed", "{failed}");
    assert!(
        failed["status"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("status: invalid"),
        "{failed}"
    );
}

/// Press Verify on the restore point's page of a `coffer ui` on `c`'s state; the plugin's
/// own verify ActionSet once it has ended.
fn dashboard_verify(c: &Cli, rp: &str) -> serde_json::Value {
    use coffer_tests::http::request;
    let token = "a-dashboard-token-for-the-test";
    let file = c.home.path().join("ui-token");
    std::fs::write(&file, token).unwrap();
    let port = coffer_tests::free_port();
    let mut ui = c
        .command()
        .args(["ui", "--addr", &format!("127.0.0.1:{port}"), "--token-file"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    coffer_tests::reap_with_this_process(ui.id(), None);
    let up = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(up.elapsed().as_secs() < 30, "coffer ui did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let page = request(port, "GET", &format!("/restorepoints/{rp}"), &auth, b"").text();
    let csrf = page
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let verified = request(
        port,
        "POST",
        &format!("/restorepoints/{rp}/verify"),
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={csrf}").as_bytes(),
    );
    let html = verified.text();
    assert_eq!(verified.status, 200, "the objects are sound: {html}");
    let set = html
        .split("id=\"plugin-verify\"")
        .nth(1)
        .and_then(|s| s.split("href=\"/actionsets/").nth(1))
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no plugin verify started: {html}"))
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let done = loop {
        let a = request(
            port,
            "GET",
            &format!("/api/v1/actionsets/{set}"),
            &auth,
            b"",
        )
        .json();
        if a["status"]["phase"] == "Completed" || a["status"]["phase"] == "Failed" {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "{a}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let _ = ui.kill();
    let _ = ui.wait();
    done
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
