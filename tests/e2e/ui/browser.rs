//! The dashboard in a real headless Chromium: log in, back up from the application's page
//! and watch it complete, open the restore point, restore through the form and find the
//! rows equal to the originals; a NonCompliant application shows its reason; a Policy made
//! from an unmanaged application's page makes it managed. Every page: links that resolve,
//! every field labelled, no sideways scrolling at phone width. Screenshots go to
//! target/tmp/ui-screenshots (not committed).

use super::*;
use coffer_tests::webdriver::Browser;

/// Every link of the current page answers 200 (with the session's cookie); every form
/// field has a label.
fn check_page(b: &Browser, ui: &Dashboard, cookie: &str) {
    let unlabelled = b.eval(
        "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')].filter(e => !e.id || !document.querySelector('label[for=\"' + e.id + '\"]')).map(e => e.name)",
    );
    assert_eq!(
        unlabelled,
        serde_json::json!([]),
        "unlabelled fields on {}",
        b.url()
    );
    let links = b.eval(
        "return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')).filter(h => h.startsWith('/'))",
    );
    for href in links.as_array().unwrap() {
        let href = href.as_str().unwrap();
        let path = href.split('#').next().unwrap();
        let a = ui.get(path, &[("Cookie", cookie)]);
        assert_eq!(
            a.status,
            200,
            "{href} (linked from {}) answered {}",
            b.url(),
            a.status
        );
    }
}

#[test]
fn dashboard_in_a_real_browser() {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |b: &Browser, name: &str| b.screenshot(&shots.join(format!("{name}.png")));

    let pg = Postgres::start(None).unwrap();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
    )
    .unwrap();
    let original = rows(&pg);
    let c = cli();
    assert!(c.apply(&workload("db", &pg)).ok);
    // A second application under a paused Policy: NonCompliant, and it says why.
    assert!(c.apply(&workload("reports", &pg)).ok);
    assert!(
        c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Policy\nmetadata: {name: reports-nightly}\nspec: {frequency: '@daily', paused: true, selector: {workloads: [reports]}, retention: {daily: 7}}\n")
            .ok
    );
    let ui = Dashboard::start(&c);
    let base = format!("http://127.0.0.1:{}", ui.port);
    let b = Browser::start();

    // Logged out: the login page; the token gets in.
    b.go(&format!("{base}/"));
    b.wait_url("/login");
    b.type_into("#token", TOKEN);
    b.click("form[action='/login'] button");
    b.wait_text("main h1", "Overview", Duration::from_secs(20));
    let cookie = format!("coffer_ui={TOKEN}");
    shot(&b, "overview");
    check_page(&b, &ui, &cookie);
    let overview = b.source();
    assert!(overview.contains("Needs attention"), "NonCompliant first");
    assert!(
        overview.contains("reports-nightly: Paused"),
        "the reason is shown"
    );

    // The application's page: back up now, and the page follows the action to its end.
    b.click("a[href='/applications/db']");
    b.wait_text("main h1", "Application db", Duration::from_secs(20));
    check_page(&b, &ui, &cookie);
    b.click("form[action='/applications/db/backup'] button");
    b.wait_url("/actionsets/backup-db-");
    b.wait_text("#phase", "Completed", Duration::from_secs(120));
    shot(&b, "backup-completed");
    check_page(&b, &ui, &cookie);

    // Its restore point, then the restore form.
    b.click("#restore-point");
    b.wait_url("/restorepoints/db-");
    shot(&b, "restore-point");
    check_page(&b, &ui, &cookie);
    pg.psql("app", "DROP TABLE t").unwrap();
    b.click("main a[href^='/applications/db/restore']");
    b.wait_text("main h1", "Restore db", Duration::from_secs(20));
    shot(&b, "restore-form");
    check_page(&b, &ui, &cookie);
    // Without the confirmation the browser does not submit (required); tick it.
    b.click("#confirm");
    b.click("form[action='/applications/db/restore'] button[type=submit]");
    b.wait_url("/actionsets/restore-db-");
    b.wait_text("#phase", "Completed", Duration::from_secs(120));
    shot(&b, "restore-completed");
    assert_eq!(rows(&pg), original);

    // A Policy from the unmanaged application's page: preview, then save.
    b.go(&format!("{base}/applications/db"));
    b.find("#pol-name");
    b.click("button[value=preview]");
    b.wait_text("main h1", "Preview policy for db", Duration::from_secs(20));
    shot(&b, "policy-preview");
    b.click("button[value=save]");
    b.wait_text("main h1", "Application db", Duration::from_secs(20));
    let apps = ui.api("GET", "/api/v1/applications", "").json();
    let db = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "db")
        .unwrap();
    assert_ne!(db["compliance"], "Unmanaged", "{db}");
    assert_eq!(db["policies"], serde_json::json!(["db-daily"]));

    // Every other page, at desktop and phone width.
    for path in [
        "/applications",
        "/actionsets",
        "/restorepoints",
        "/policies",
        "/profiles",
        "/blueprints",
    ] {
        b.go(&format!("{base}{path}"));
        b.find("main h1");
        check_page(&b, &ui, &cookie);
    }
    b.resize(390, 844);
    for (path, name) in [
        ("/", "phone-overview"),
        ("/applications/db", "phone-application"),
    ] {
        b.go(&format!("{base}{path}"));
        b.find("main h1");
        shot(&b, name);
        let sideways =
            b.eval("return document.documentElement.scrollWidth > window.innerWidth + 1");
        assert_eq!(
            sideways,
            serde_json::json!(false),
            "{path} scrolls sideways at 390 px"
        );
    }
}
