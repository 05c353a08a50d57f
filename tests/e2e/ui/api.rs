//! The JSON API and the forms over plain HTTP: who gets in, CSRF, the contract, and a
//! backup and a restore started through it whose rows equal the originals.

use super::*;

#[test]
fn dashboard_requires_the_token_and_backs_up_and_restores() {
    let pg = Postgres::start(None).unwrap();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
    )
    .unwrap();
    let original = rows(&pg);
    let c = cli();
    assert!(c.apply(&workload("db", &pg)).ok);
    let ui = Dashboard::start(&c);

    // No token, a wrong token: 401 from the API; a browser is sent to the login page.
    assert_eq!(ui.get("/api/v1/applications", &[]).status, 401);
    assert_eq!(
        ui.get("/api/v1/applications", &[("Authorization", "Bearer wrong")])
            .status,
        401
    );
    let page = ui.get("/", &[]);
    assert_eq!(page.status, 303, "{}", page.head);
    assert_eq!(page.header("location").as_deref(), Some("/login"));
    let bad_login = request(
        ui.port,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=nope",
    );
    assert_eq!(bad_login.status, 401);
    // A log-in posted from another site's page (login CSRF) is refused, right token or not.
    let foreign = request(
        ui.port,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "https://evil.example"),
        ],
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(foreign.status, 403);
    assert!(foreign.header("set-cookie").is_none(), "{}", foreign.head);

    // The application, Unmanaged, with no restore points yet.
    let apps = ui.api("GET", "/api/v1/applications", "").json();
    assert_eq!(apps[0]["name"], "db");
    assert_eq!(apps[0]["blueprint"], "postgres-logical");
    assert_eq!(apps[0]["compliance"], "Unmanaged");
    assert_eq!(apps[0]["restorePoints"], 0);

    // Back up through the API: answered with the ActionSet it created.
    let started = ui.api("POST", "/api/v1/applications/db/backup", "");
    assert_eq!(started.status, 202, "{}", started.text());
    let name = started.json()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let done = ui.wait(&name);
    assert_eq!(done["status"]["phase"], "Completed", "{done}");
    let rp = done["status"]["restorePoint"].as_str().unwrap().to_string();
    // The live events carry the plugin's log lines after the ones the page has.
    let logs = done["status"]["logs"].as_array().unwrap();
    assert!(!logs.is_empty(), "the plugin logged: {done}");
    let events = ui.api("GET", &format!("/actionsets/{name}/events?from=0"), "");
    assert_eq!(events.status, 200);
    let stream = events.text();
    assert!(stream.contains("event: progress"), "{stream}");
    let line = serde_json::Value::from(logs[logs.len() - 1]["message"].as_str().unwrap());
    assert!(stream.contains(&line.to_string()), "{stream}");
    let later = ui
        .api(
            "GET",
            &format!("/actionsets/{name}/events?from={}", logs.len()),
            "",
        )
        .text();
    assert!(later.contains("\"logs\":[]"), "{later}");
    let rps = ui.api("GET", "/api/v1/restorepoints", "").json();
    assert!(
        rps.as_array()
            .unwrap()
            .iter()
            .any(|r| r["metadata"]["name"] == rp.as_str())
    );
    let sets = ui.api("GET", "/api/v1/actionsets", "").json();
    assert!(
        sets.as_array()
            .unwrap()
            .iter()
            .any(|a| a["metadata"]["name"] == name.as_str())
    );
    assert!(
        ui.api("GET", "/api/v1/policies", "")
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A browser: the login form sets the cookie; a form without the CSRF token is refused
    // and starts nothing; with it, the backup starts and the page follows it.
    let login = request(
        ui.port,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(login.status, 303);
    let cookie = login.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let overview = ui.get("/", &[("Cookie", &cookie)]);
    assert_eq!(overview.status, 200);
    let html = overview.text();
    assert!(html.contains("Back up now"), "{html}");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let before = ui
        .api("GET", "/api/v1/actionsets", "")
        .json()
        .as_array()
        .unwrap()
        .len();
    let form = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let refused = request(ui.port, "POST", "/applications/db/backup", &form, b"");
    assert_eq!(refused.status, 403);
    let refused = request(
        ui.port,
        "POST",
        "/applications/db/backup",
        &form,
        b"csrf=forged",
    );
    assert_eq!(refused.status, 403);
    // The API through the cookie needs the CSRF header too.
    let refused = request(
        ui.port,
        "POST",
        "/api/v1/applications/db/backup",
        &[("Cookie", cookie.as_str())],
        b"",
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        ui.api("GET", "/api/v1/actionsets", "")
            .json()
            .as_array()
            .unwrap()
            .len(),
        before
    );
    let posted = request(
        ui.port,
        "POST",
        "/applications/db/backup",
        &form,
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(posted.status, 303, "{}", posted.text());
    let follow = posted.header("location").unwrap();
    let second = follow.strip_prefix("/actionsets/").unwrap().to_string();
    let second_rp = ui.wait(&second)["status"]["restorePoint"]
        .as_str()
        .unwrap()
        .to_string();
    let page = ui.get(&follow, &[("Cookie", &cookie)]).text();
    assert!(page.contains("Completed"), "{page}");

    // A point in time: the newest restore point at or before it, shown before anything runs.
    let at = ui.get(
        "/applications/db/restore?at=2100-01-01T00:00:00Z",
        &[("Cookie", &cookie)],
    );
    assert_eq!(at.status, 200, "{}", at.text());
    assert!(
        at.text().contains(&format!("value=\"{second_rp}\"")),
        "{}",
        at.text()
    );
    let early = ui.get(
        "/applications/db/restore?at=2000-01-01T00:00:00Z",
        &[("Cookie", &cookie)],
    );
    assert_eq!(early.status, 422);
    assert!(
        early.text().contains("no RestorePoint taken at or before"),
        "{}",
        early.text()
    );

    // Restore the first restore point through the API: the rows come back.
    pg.psql("app", "DROP TABLE t").unwrap();
    let bad = ui.api(
        "POST",
        "/api/v1/applications/db/restore",
        "{\"restorePoint\": \"nope\"}",
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.json()["error"].as_str().unwrap().contains("nope"));
    let started = ui.api(
        "POST",
        "/api/v1/applications/db/restore",
        &format!("{{\"restorePoint\": \"{rp}\"}}"),
    );
    assert_eq!(started.status, 202, "{}", started.text());
    let name = started.json()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ui.wait(&name)["status"]["phase"], "Completed");
    assert_eq!(rows(&pg), original);

    let apps = ui.api("GET", "/api/v1/applications", "").json();
    assert_eq!(apps[0]["restorePoints"], 2);
    assert_eq!(
        ui.api("POST", "/api/v1/applications/ghost/backup", "")
            .status,
        422
    );
}

/// `coffer daemon --ui`: the local scheduler serves the dashboard too, with the same token
/// rules; a token file too short is refused before anything starts.
#[test]
fn the_local_daemon_serves_the_dashboard() {
    let c = cli();
    assert!(c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: shop}\nspec: {blueprint: postgres-logical}\n").ok);
    let short = c.home.path().join("short-token");
    std::fs::write(&short, "abc").unwrap();
    let refused = c
        .command()
        .args(["daemon", "--ui", "127.0.0.1:0", "--ui-token-file"])
        .arg(&short)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("at least 16 characters"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let token_file = c.home.path().join("ui-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let port = coffer_tests::free_port();
    let mut daemon = c
        .command()
        .args([
            "daemon",
            "--ui",
            &format!("127.0.0.1:{port}"),
            "--ui-token-file",
        ])
        .arg(&token_file)
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    coffer_tests::reap_with_this_process(daemon.id(), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon's dashboard did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        request(port, "GET", "/api/v1/applications", &[], &[]).status,
        401
    );
    let bearer = format!("Bearer {TOKEN}");
    let apps = request(
        port,
        "GET",
        "/api/v1/applications",
        &[("Authorization", &bearer)],
        &[],
    );
    assert_eq!(apps.status, 200);
    assert_eq!(apps.json()[0]["name"], "shop");
    let _ = daemon.kill();
    let _ = daemon.wait();
}
