//! A real headless Chromium (Debian's `chromium` and `chromium-driver`) driven over the W3C
//! WebDriver protocol: the few commands the dashboard tests need, on chromedriver started
//! by the test and stopped with it.

use crate::http::request;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    port: u16,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// chromedriver and a headless Chromium at 1280×900.
    pub fn start() -> Browser {
        crate::ensure_packages();
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (Debian package chromium-driver)");
        crate::reap_with_this_process(driver.id(), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let mut b = Browser {
            port,
            session: String::new(),
            driver,
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("a session").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let a = request(
            self.port,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let v = a.json();
        assert!(
            a.status == 200,
            "WebDriver {method} {path}: {} {}",
            a.status,
            v["value"]["message"]
        );
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn go(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait until the address contains `part` (a click that posts a form returns before
    /// the next page has loaded); the address.
    pub fn wait_url(&self, part: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let u = self.url();
            if u.contains(part) {
                return u;
            }
            assert!(
                Instant::now() < deadline,
                "the address never reached {part}: {u}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first element matching a CSS selector now, if there is one.
    fn try_find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css}).to_string();
        let a = request(
            self.port,
            "POST",
            &self.at("/element"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        (a.status == 200).then(|| a.json()["value"][ELEMENT].as_str().unwrap().to_string())
    }

    /// The first element matching a CSS selector, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Click the element; found again if the page replaced it meanwhile (a reload).
    pub fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css);
            let a = request(
                self.port,
                "POST",
                &self.at(&format!("/element/{e}/click")),
                &[("Content-Type", "application/json")],
                b"{}",
            );
            if a.status == 200 {
                return;
            }
            let err = a.json()["value"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                err == "stale element reference" && Instant::now() < deadline,
                "clicking {css}: {} {}",
                a.status,
                a.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/value")),
            Some(json!({"text": text})),
        );
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &self.at(&format!("/element/{e}/text")), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the element's text equals `want` (pages reload as actions progress).
    pub fn wait_text(&self, css: &str, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.try_find(css) {
                let t = request(
                    self.port,
                    "GET",
                    &self.at(&format!("/element/{e}/text")),
                    &[],
                    &[],
                );
                if t.status == 200 && t.json()["value"].as_str() == Some(want) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} never read {want:?} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn source(&self) -> String {
        self.call("GET", &self.at("/source"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Run a script in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let b64 = self.call("GET", &self.at("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(self.port, "DELETE", &self.at(""), &[], &[]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
