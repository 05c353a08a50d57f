//! End-to-end: the dashboard (`coffer ui`) against a state dir with a real PostgreSQL
//! workload — over plain HTTP (the token, CSRF, the JSON API's contract) and in a real
//! headless Chromium (the pages a person uses, at desktop and phone width).

mod api;
mod browser;

use coffer_tests::cli::Cli;
use coffer_tests::http::{Answer, request};
use coffer_tests::postgres::Postgres;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}

pub const TOKEN: &str = "ui-test-token-0123456789abcdef";

/// `coffer ui` on a free port, stopped when dropped.
pub struct Dashboard {
    pub port: u16,
    child: Child,
}

impl Dashboard {
    pub fn start(c: &Cli) -> Dashboard {
        let token_file = c.home.path().join("ui-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let port = coffer_tests::free_port();
        let child = c
            .command()
            .args(["ui", "--addr", &format!("127.0.0.1:{port}"), "--token-file"])
            .arg(&token_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        coffer_tests::reap_with_this_process(child.id(), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "coffer ui did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Dashboard { port, child }
    }

    pub fn get(&self, path: &str, auth: &[(&str, &str)]) -> Answer {
        request(self.port, "GET", path, auth, &[])
    }

    pub fn api(&self, method: &str, path: &str, body: &str) -> Answer {
        let bearer = format!("Bearer {TOKEN}");
        request(
            self.port,
            method,
            path,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// Poll the ActionSet until it ends; its final document.
    pub fn wait(&self, name: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let a = self.api("GET", &format!("/api/v1/actionsets/{name}"), "");
            assert_eq!(a.status, 200, "{}", a.text());
            let v = a.json();
            let phase = v["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if phase == "Completed" || phase == "Failed" {
                return v;
            }
            assert!(Instant::now() < deadline, "ActionSet {name} still {phase}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn workload(name: &str, pg: &Postgres) -> String {
    let env: Vec<String> = pg
        .env()
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  blueprint: postgres-logical\n  env: {{{}}}\n",
        env.join(", ")
    )
}

pub fn rows(pg: &Postgres) -> String {
    pg.psql(
        "app",
        "SELECT count(*) || ',' || coalesce(sum(id), 0) || ',' || md5(string_agg(note, ',' ORDER BY id)) FROM t",
    )
    .unwrap()
}
