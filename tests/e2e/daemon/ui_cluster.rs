//! The dashboard of `coffer daemon --ui` on a real API server: people sign in with their
//! own Kubernetes token, see only the namespaces their RBAC lets them list coffer's
//! resources in, and may back up or restore only where they may create ActionSets — a
//! viewer's restore is 403 and no ActionSet exists; an operator's backup and restore of a
//! real PostgreSQL through the API and the forms bring back the original rows. The daemon
//! runs as the shipped ServiceAccount, so deploy/rbac.yaml's TokenReview and
//! SubjectAccessReview rules are what is exercised.

use crate::env::*;
use coffer_tests::http::{Answer, request};

const TABLE: &str = "CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 3000) g;";
const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM items x";

const PEOPLE: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer, namespace: db}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: operator, namespace: db}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: outsider, namespace: db}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer, namespace: db}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: coffer-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: db}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: operator, namespace: db}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: coffer-operator}
subjects: [{kind: ServiceAccount, name: operator, namespace: db}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: db-viewer, namespace: coffer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: coffer-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: db}]
---
apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {name: pg-dump-only, namespace: coffer}
spec:
  plugin: {builtin: postgres}
  grants: {exec: ["pg_dump **"]}
"#;

struct Ui {
    port: u16,
}

impl Ui {
    fn call(&self, method: &str, path: &str, token: &str, body: &str) -> Answer {
        let auth = format!("Bearer {token}");
        let mut h = vec![("Content-Type", "application/json")];
        if !token.is_empty() {
            h.push(("Authorization", auth.as_str()));
        }
        request(self.port, method, path, &h, body.as_bytes())
    }

    fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, token, "")
    }

    fn form(&self, path: &str, cookie: &str, body: &str) -> Answer {
        request(
            self.port,
            "POST",
            path,
            &[
                ("Cookie", cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
    }

    /// The ActionSet once it has ended, read through the dashboard's API.
    fn finished(&self, name: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let a = self.get(&format!("/api/v1/actionsets/db/{name}"), token);
            assert_eq!(a.status, 200, "{}", a.text());
            let v = a.json();
            if v["status"]["phase"] == "Completed" || v["status"]["phase"] == "Failed" {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "ActionSet {name} did not end: {v}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn app<'a>(apps: &'a Value, name: &str) -> Option<&'a Value> {
    apps.as_array()?.iter().find(|a| a["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_dashboard_shows_and_does_only_what_rbac_allows() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    let pg = Postgres::start(Some("pod-secret-pw")).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", TABLE).unwrap();
    let original = pg.psql("shop", CHECK).unwrap();
    Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), "db")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "pg-auth"}, "stringData": {"password": "pod-secret-pw"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    env.statefulset(
        "pg",
        pg_env(&pg),
        json!({"coffer.dev/blueprint": "postgres-logical",
               "secret.coffer.dev/password": "pg-auth/password"}),
    )
    .await;
    env.statefulset("cache", vec![], json!({})).await;
    kube.apply(PEOPLE).await;
    let viewer = kube.service_account_token("db", "viewer").await;
    let operator = kube.service_account_token("db", "operator").await;
    let outsider = kube.service_account_token("db", "outsider").await;

    let ui = Ui {
        port: coffer_tests::free_port(),
    };
    let daemon = env.daemon_with(
        "coffer-a",
        coffer_tests::free_port(),
        &["--ui", &format!("127.0.0.1:{}", ui.port)],
    );
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", ui.port)).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "the dashboard did not start:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Only tokens the API server vouches for.
    assert_eq!(ui.get("/api/v1/applications", "").status, 401);
    assert_eq!(ui.get("/api/v1/applications", "not-a-token").status, 401);
    let page = ui.get("/", "");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location").as_deref(), Some("/login"));

    // Who sees what: nothing outside one's RBAC.
    let none = ui.get("/api/v1/applications", &outsider);
    assert_eq!(none.status, 200, "{}", none.text());
    assert_eq!(
        none.json(),
        json!([]),
        "the outsider may list nothing in db"
    );
    assert_eq!(ui.get("/api/v1/policies", &outsider).status, 403);
    let apps = ui.get("/api/v1/applications", &viewer).json();
    let pg_app = app(&apps, "db/statefulset/pg").unwrap_or_else(|| panic!("{apps}"));
    assert_eq!(pg_app["blueprint"], "postgres-logical");
    assert_eq!(pg_app["boundBy"], "annotation");
    assert_eq!(pg_app["compliance"], "Unmanaged");
    assert_eq!(pg_app["restorePoints"], 0);
    let cache = app(&apps, "db/statefulset/cache").unwrap();
    assert_eq!(cache["compliance"], "Unprotected");
    assert_eq!(cache["boundBy"], "none");

    // The viewer may not start anything: 403, and no ActionSet.
    let refused = ui.call(
        "POST",
        "/api/v1/applications/db/statefulset/pg/backup",
        &viewer,
        "",
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains(
            "system:serviceaccount:db:viewer may not create actionsets.coffer.dev in namespace db"
        ),
        "{}",
        refused.text()
    );
    let sets = coffer_api(&env.client, "ActionSet", "db");
    assert!(
        sets.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The operator backs up through the API.
    let started = ui.call(
        "POST",
        "/api/v1/applications/db/statefulset/pg/backup",
        &operator,
        "",
    );
    assert_eq!(started.status, 202, "{}", started.text());
    let name = started.json()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        started.json()["metadata"]["annotations"]["coffer.dev/requested-by"],
        "system:serviceaccount:db:operator"
    );
    let done = ui.finished(&name, &operator);
    assert_eq!(
        done["status"]["phase"],
        "Completed",
        "{done}\n{}",
        daemon.log()
    );
    let rp = done["status"]["restorePoint"].as_str().unwrap().to_string();
    let events = ui.get(&format!("/actionsets/db/{name}/events?from=0"), &operator);
    assert_eq!(events.status, 200);
    assert!(
        events.text().contains("\"phase\":\"Completed\""),
        "{}",
        events.text()
    );
    assert_eq!(
        ui.get(&format!("/actionsets/db/{name}/events"), &outsider)
            .status,
        403,
        "the outsider may not follow db's actions"
    );
    let rps = ui.get("/api/v1/restorepoints", &viewer).json();
    assert!(
        rps.as_array()
            .unwrap()
            .iter()
            .any(|r| r["metadata"]["name"] == rp.as_str()
                && r["spec"]["workload"] == "statefulset/pg"),
        "{rps}"
    );
    assert_eq!(
        app(
            &ui.get("/api/v1/applications", &viewer).json(),
            "db/statefulset/pg"
        )
        .unwrap()["restorePoints"],
        1
    );

    // Restores: the viewer is refused; bad requests say why; the operator's brings the rows back.
    pg.psql("shop", "DELETE FROM items WHERE id > 100").unwrap();
    let body = json!({"restorePoint": rp}).to_string();
    let path = "/api/v1/applications/db/statefulset/pg/restore";
    assert_eq!(ui.call("POST", path, &viewer, &body).status, 403);
    let into_other = json!({"restorePoint": rp, "targetNamespace": "default"}).to_string();
    let r = ui.call("POST", path, &operator, &into_other);
    assert_eq!(
        r.status,
        403,
        "the operator may not act in default: {}",
        r.text()
    );
    let r = ui.call("POST", path, &operator, r#"{"restorePoint": "nope"}"#);
    assert_eq!(r.status, 404, "{}", r.text());
    let r = ui.call(
        "POST",
        path,
        &operator,
        r#"{"restorePoint": "x", "force": true}"#,
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "no refused request made an ActionSet"
    );
    let r = ui.call("POST", path, &operator, r#"{"at": "2000-01-01T00:00:00Z"}"#);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("no RestorePoint taken at or before"),
        "{}",
        r.text()
    );
    let both = json!({"restorePoint": rp, "at": "2000-01-01T00:00:00Z"}).to_string();
    assert_eq!(ui.call("POST", path, &operator, &both).status, 422);
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "no refused request made an ActionSet"
    );
    // A point in time: the newest restore point taken at or before it.
    let at_now = json!({"at": now()}).to_string();
    let r = ui.call("POST", path, &operator, &at_now);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["spec"]["restorePoint"], rp.as_str());
    let restored = ui.finished(r.json()["metadata"]["name"].as_str().unwrap(), &operator);
    assert_eq!(restored["status"]["phase"], "Completed", "{restored}");
    assert_eq!(pg.psql("shop", CHECK).unwrap(), original);

    // A browser: log in with the token (an HttpOnly cookie), every link on the overview
    // works, forms need the CSRF token, and "Back up now" starts a backup.
    let bad = ui.form("/login", "", "token=nope");
    assert_eq!(bad.status, 401);
    // Posted from another site's page (login CSRF): refused, even with a good token.
    let foreign = request(
        ui.port,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        format!("token={operator}").as_bytes(),
    );
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    assert!(foreign.header("set-cookie").is_none());
    let login = ui.form("/login", "", &format!("token={operator}"));
    assert_eq!(login.status, 303, "{}", login.text());
    let set_cookie = login.header("set-cookie").unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let overview = request(ui.port, "GET", "/", &[("Cookie", &cookie)], b"");
    assert_eq!(overview.status, 200);
    let html = overview.text();
    assert!(html.contains("system:serviceaccount:db:operator"), "{html}");
    assert!(html.contains("db/statefulset/pg"), "{html}");
    assert!(
        !html.contains("pod-secret-pw"),
        "no secret value is rendered"
    );
    for href in html
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
    {
        if let Some(kind) = ["policies", "profiles", "blueprints"]
            .into_iter()
            .find(|k| href == format!("/{k}"))
        {
            // They live in coffer's namespace, where the operator has no Role.
            let a = request(ui.port, "GET", href, &[("Cookie", &cookie)], b"");
            assert_eq!(a.status, 403);
            assert!(
                a.text().contains(&format!(
                    "may not list {kind}.coffer.dev in namespace coffer"
                )),
                "{}",
                a.text()
            );
        } else if href.starts_with('/') {
            let a = request(
                ui.port,
                "GET",
                &href.replace("&amp;", "&"),
                &[("Cookie", &cookie)],
                b"",
            );
            assert_eq!(a.status, 200, "broken link {href}: {}", a.text());
        }
    }
    let app_page = request(
        ui.port,
        "GET",
        "/applications/db/statefulset/pg",
        &[("Cookie", &cookie)],
        b"",
    )
    .text();
    assert!(app_page.contains(&rp), "the restore point is listed");
    let csrf = app_page
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let form = "/applications/db/statefulset/pg/backup";
    assert_eq!(ui.form(form, &cookie, "").status, 403, "no CSRF token");
    assert_eq!(ui.form(form, &cookie, "csrf=forged").status, 403);
    let api_by_cookie = request(
        ui.port,
        "POST",
        "/api/v1/applications/db/statefulset/pg/backup",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(
        api_by_cookie.status, 403,
        "the API by cookie needs X-CSRF-Token"
    );
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let posted = ui.form(form, &cookie, &format!("csrf={csrf}"));
    assert_eq!(posted.status, 303, "{}", posted.text());
    let at = posted.header("location").unwrap();
    assert!(at.starts_with("/actionsets/db/backup-pg-"), "{at}");
    let action_page = request(ui.port, "GET", &at, &[("Cookie", &cookie)], b"");
    assert_eq!(action_page.status, 200);
    assert!(action_page.text().contains("statefulset/pg"));
    let third = ui.finished(at.rsplit('/').next().unwrap(), &operator);
    assert_eq!(third["status"]["phase"], "Completed", "{third}");

    // A viewer's session sees the action and may not restore by form either.
    let vlogin = ui.form("/login", "", &format!("token={viewer}"));
    let vcookie = vlogin
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let vpage = request(ui.port, "GET", &at, &[("Cookie", &vcookie)], b"").text();
    let vcsrf = vpage
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert_ne!(vcsrf, csrf, "each person's CSRF token is their own");
    let vrestore = ui.form(
        "/applications/db/statefulset/pg/restore",
        &vcookie,
        &format!("csrf={vcsrf}&restorePoint={rp}&confirm=yes"),
    );
    assert_eq!(vrestore.status, 403, "{}", vrestore.text());
    // Bound in coffer's namespace too, the viewer sees Policies, Profiles and Blueprints.
    let profiles = request(ui.port, "GET", "/profiles", &[("Cookie", &vcookie)], b"");
    assert_eq!(profiles.status, 200, "{}", profiles.text());
    let text = profiles.text();
    assert!(
        text.contains(">default<") && text.contains(">file<"),
        "{text}"
    );
    assert!(
        !text.contains("AGE-SECRET-KEY"),
        "no secret value is rendered"
    );
    let blueprints = request(ui.port, "GET", "/blueprints", &[("Cookie", &vcookie)], b"").text();
    assert!(
        blueprints.contains("pg-dump-only") && blueprints.contains("pg_dump **"),
        "{blueprints}"
    );
    let policies = request(ui.port, "GET", "/policies", &[("Cookie", &vcookie)], b"");
    assert_eq!(policies.status, 200);
    // The point-in-time form chooses the restore point and says which.
    let pit = request(
        ui.port,
        "GET",
        &format!("/applications/db/statefulset/pg/restore?at={}", now()),
        &[("Cookie", &vcookie)],
        b"",
    )
    .text();
    assert!(pit.contains("id=\"chosen\""), "{pit}");
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
}

/// Now, in RFC 3339 UTC seconds (what `at` takes, and safe in a URL).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
