//! Throwaway MariaDB 10.11, etcd 3.4 and Redis 7 servers (Debian's packages): their own
//! data dir and port on 127.0.0.1, stopped on drop.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn wait_until(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not become ready: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// SIGTERM `child` and wait for it (SIGKILL after 20 s).
pub(crate) fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn output_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// MariaDB with a root password, reachable over TCP.
pub struct MariaDb {
    pub dir: tempfile::TempDir,
    /// The data directory (`dir/data` unless the test chose one).
    pub data: PathBuf,
    pub port: u16,
    pub password: String,
    /// Server options beyond the defaults (e.g. binary logging).
    extra: Vec<String>,
    child: Option<Child>,
}

fn server_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("coffer-mariadb-")
        .tempdir_in("/tmp")
        .unwrap();
    if unsafe { libc::geteuid() } == 0 {
        let _ = Command::new("chown")
            .args(["mysql:mysql"])
            .arg(dir.path())
            .status();
    }
    dir
}

impl MariaDb {
    pub fn start(password: &str) -> MariaDb {
        let dir = server_dir();
        let data = dir.path().join("data");
        MariaDb::install(dir, data, password, &[])
    }

    /// A new server whose data directory is `data` (absent or empty, e.g. a btrfs
    /// subvolume), run with `extra` server options.
    pub fn start_in(data: &Path, password: &str, extra: &[&str]) -> MariaDb {
        MariaDb::install(server_dir(), data.to_path_buf(), password, extra)
    }

    /// A server on an existing data directory (one a restore made); its root password is
    /// the one the data has.
    pub fn start_on(data: &Path, password: &str, extra: &[&str]) -> MariaDb {
        crate::ensure_packages();
        let mut m = MariaDb {
            dir: server_dir(),
            data: data.to_path_buf(),
            port: free_port(),
            password: password.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        m.start_server();
        m
    }

    fn install(dir: tempfile::TempDir, data: PathBuf, password: &str, extra: &[&str]) -> MariaDb {
        crate::ensure_packages();
        let root = unsafe { libc::geteuid() } == 0;
        if root && data.exists() {
            let _ = Command::new("chown")
                .args(["mysql:mysql"])
                .arg(&data)
                .status();
        }
        // The bootstrap's temporary tables live in this server's own directory, not in a
        // /tmp every other server of the run shares.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        if root {
            let _ = Command::new("chown").arg("mysql:mysql").arg(&tmp).status();
        }
        {
            // Two bootstraps at once in one test process fail now and then ("Installation
            // of system tables failed"): one at a time.
            static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
            // MariaDB 10.11's bootstrap itself segfaults now and then (in
            // ha_maria::drop_table, seen once in CI): a crashed install leaves a partial
            // data directory, so empty it and install again.
            for attempt in 1..=3 {
                let mut install = Command::new("mariadb-install-db");
                install
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--tmpdir={}", tmp.display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
                if root {
                    install.arg("--user=mysql");
                }
                let out = install.output().expect("running mariadb-install-db");
                if out.status.success() {
                    break;
                }
                let why = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(attempt < 3, "mariadb-install-db failed three times: {why}");
                eprintln!("mariadb-install-db failed (attempt {attempt}), again: {why}");
                if let Ok(entries) = std::fs::read_dir(&data) {
                    for e in entries.flatten() {
                        let p = e.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            }
        }
        let mut m = MariaDb {
            dir,
            data,
            port: free_port(),
            password: password.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        m.start_server();
        // Only TCP users matter; the host-named root some installs add trips
        // `mariadb-dump --system=users`, so keep the accounts a server really has.
        m.sql_nopw(&format!(
            "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost','127.0.0.1','::1','%'); FLUSH PRIVILEGES; \
             ALTER USER root@'127.0.0.1' IDENTIFIED BY '{password}'; ALTER USER root@'localhost' IDENTIFIED BY '{password}'"
        ));
        m
    }

    /// Start mariadbd; readiness is asked through its own socket, so a server of another
    /// test that won the port race is never taken for this one. A server that could not
    /// bind its port (taken between choosing and binding it) is started again on another.
    fn start_server(&mut self) {
        let d = self.dir.path().to_path_buf();
        let log = d.join("error.log");
        let socket = d.join("mysql.sock");
        for attempt in 0..3 {
            if attempt > 0 {
                self.port = free_port();
            }
            let mut cmd = Command::new("mariadbd");
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", self.data.display()))
                .arg(format!("--port={}", self.port))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .args(["--skip-name-resolve", "--innodb-buffer-pool-size=64M"])
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if unsafe { libc::geteuid() } == 0 {
                cmd.arg("--user=mysql");
            }
            let child = cmd.spawn().expect("starting mariadbd");
            crate::reap_with_this_process(child.id(), None);
            self.child = Some(child);
            let mut exited = false;
            wait_until("mariadbd", &log, || {
                if let Some(c) = self.child.as_mut()
                    && c.try_wait().is_ok_and(|s| s.is_some())
                {
                    exited = true;
                    return true;
                }
                Command::new("mariadb-admin")
                    .args(["--no-defaults", "-uroot"])
                    .arg(format!("--socket={}", socket.display()))
                    .arg("--connect-timeout=1")
                    .arg("ping")
                    .env("MYSQL_PWD", "")
                    .output()
                    .is_ok_and(|o| {
                        o.status.success()
                            || String::from_utf8_lossy(&o.stderr).contains("Access denied")
                    })
            });
            if !exited {
                return;
            }
            self.child = None;
        }
        panic!(
            "mariadbd exited at start three times: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn sql_nopw(&self, sql: &str) -> String {
        output_ok(
            Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "-uroot",
                    "--batch",
                    "--skip-column-names",
                ])
                .arg(format!("-P{}", self.port))
                .args(["-e", sql]),
            "mariadb",
        )
    }

    /// Run SQL as root; stdout of --batch --skip-column-names.
    pub fn sql(&self, sql: &str) -> String {
        output_ok(
            Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "-uroot",
                    "--batch",
                    "--skip-column-names",
                ])
                .arg(format!("-P{}", self.port))
                .arg("--default-character-set=utf8mb4")
                .env("MYSQL_PWD", &self.password)
                .args(["-e", sql]),
            "mariadb",
        )
    }

    pub fn stop(&mut self) {
        stop(&mut self.child);
    }

    /// The server's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A single-member etcd.
pub struct Etcd {
    pub dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Etcd::start_on(dir, data)
    }

    /// Start a member on an existing data dir (e.g. one a restore produced).
    pub fn start_on(dir: tempfile::TempDir, data: PathBuf) -> Etcd {
        crate::ensure_packages();
        let mut e = Etcd {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        let log = e.dir.path().join(format!("etcd-{}.log", e.client_port));
        let client = format!("http://127.0.0.1:{}", e.client_port);
        let peer = format!("http://127.0.0.1:{}", e.peer_port);
        let child = Command::new("etcd")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting etcd");
        crate::reap_with_this_process(child.id(), None);
        e.child = Some(child);
        let port = e.client_port;
        wait_until("etcd", &log, || {
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints=127.0.0.1:{port}"))
                .args(["--dial-timeout=1s", "endpoint", "health"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        e
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn etcdctl(&self, args: &[&str]) -> String {
        output_ok(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.endpoint()))
                .args(args),
            "etcdctl",
        )
    }

    pub fn stop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis with a password and no persistence of its own.
pub struct Redis {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub password: Option<String>,
    child: Option<Child>,
}

impl Redis {
    pub fn start(password: Option<&str>) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        Redis::start_in(dir, password)
    }

    /// Start with `dir` as its working dir: it loads `dir/dump.rdb` if there is one.
    pub fn start_in(dir: tempfile::TempDir, password: Option<&str>) -> Redis {
        crate::ensure_packages();
        let port = free_port();
        let log = dir.path().join(format!("redis-{port}.log"));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "local",
                "--logfile",
            ])
            .arg(&log);
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        crate::reap_with_this_process(child.id(), None);
        let r = Redis {
            dir,
            port,
            password: password.map(String::from),
            child: Some(child),
        };
        wait_until("redis-server", &log, || {
            r.cli_raw(&["ping"]).is_some_and(|o| o.trim() == "PONG")
        });
        r
    }

    fn cli_raw(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--no-auth-warning", "-p", &self.port.to_string()])
            .args(args);
        if let Some(pw) = &self.password {
            cmd.env("REDISCLI_AUTH", pw);
        }
        let out = cmd.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_raw(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    pub fn stop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
