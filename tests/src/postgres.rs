//! A throwaway PostgreSQL 15 server: its own data dir and port, run as user `postgres` when
//! the tests run as root (the server refuses to run as root), stopped on drop.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PGBIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub dir: tempfile::TempDir,
    /// The data directory (`dir/data` unless the test chose one).
    data: PathBuf,
    pub port: u16,
    /// The superuser password; None means trust auth.
    pub password: Option<String>,
    ids: Option<(u32, u32)>,
    running: bool,
}

/// uid and gid of `postgres`, when we are root and must switch to it.
fn postgres_ids() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls; getpwnam's result is read before any other call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() {
            panic!("running as root, but there is no `postgres` user to run PostgreSQL as");
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

impl Postgres {
    /// initdb and start a server; with a password, TCP connections need it (scram-sha-256).
    pub fn start(password: Option<&str>) -> Result<Postgres> {
        Postgres::init(None, password)
    }

    /// [`Postgres::start`] with the data directory at `data` (absent or empty, e.g. a btrfs
    /// subvolume; its parents must be traversable by `postgres`).
    pub fn start_in(data: &Path, password: Option<&str>) -> Result<Postgres> {
        Postgres::init(Some(data), password)
    }

    /// A server on an existing data directory (one a restore made); it recovers first.
    pub fn start_on(data: &Path) -> Result<Postgres> {
        let mut pg = Postgres::new(Some(data), None)?;
        pg.start_server()?;
        Ok(pg)
    }

    fn new(data: Option<&Path>, password: Option<&str>) -> Result<Postgres> {
        crate::ensure_packages();
        let ids = postgres_ids();
        // Not under /root: every parent of the data dir must be readable by `postgres`.
        let dir = tempfile::Builder::new()
            .prefix("coffer-pg-")
            .tempdir_in("/tmp")?;
        let pg = Postgres {
            data: data.map_or_else(|| dir.path().join("data"), Path::to_path_buf),
            dir,
            port: 0,
            password: password.map(String::from),
            ids,
            running: false,
        };
        pg.chown(pg.dir.path())?;
        Ok(pg)
    }

    fn init(data: Option<&Path>, password: Option<&str>) -> Result<Postgres> {
        // Mutable: the port is chosen when it starts.
        let mut pg = Postgres::new(data, password)?;
        if data.is_some() {
            pg.chown(&pg.data)?;
        }
        let data = pg.data_dir();
        let mut initdb = pg.as_server_user(Command::new(format!("{PGBIN}/initdb")));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        match password {
            None => {
                initdb.args(["-A", "trust"]);
            }
            Some(pw) => {
                let pwfile = pg.dir.path().join("pwfile");
                std::fs::write(&pwfile, pw)?;
                pg.chown(&pwfile)?;
                initdb
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
        }
        run_checked(&mut initdb, "initdb")?;
        pg.start_server()?;
        Ok(pg)
    }

    fn start_server(&mut self) -> Result<()> {
        // A port can be taken between choosing and binding it: try a few.
        let mut last = None;
        for attempt in 0..3 {
            // A restart keeps its port when it can: clients' configuration names it.
            if attempt > 0 || self.port == 0 {
                self.port = crate::free_port();
            }
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.running = true;
                    // The postmaster's pid is the first line of postmaster.pid.
                    let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
                        .ok()
                        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
                    if let Some(pid) = pid {
                        crate::reap_with_this_process(pid, Some(self.dir.path()));
                    }
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn chown(&self, p: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn as_server_user(&self, mut cmd: Command) -> Command {
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGPASSWORD").current_dir("/tmp");
        cmd
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = self.as_server_user(Command::new(format!("{PGBIN}/pg_ctl")));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"));
        cmd.args(["-w", "-t", "60", "-o", &opts, "start"]);
        run_checked(&mut cmd, "pg_ctl start")
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}\nserver log:\n{}", self.log()))
    }

    /// Start a stopped server again on its data directory (on its port when it can).
    pub fn start_again(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        self.start_server()
    }

    /// Stop the server (fast shutdown), e.g. to test a backup against a server that is down.
    pub fn stop(&mut self) {
        if self.running {
            let mut cmd = self.as_server_user(Command::new(format!("{PGBIN}/pg_ctl")));
            cmd.arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-m", "fast", "stop"]);
            let _ = cmd.output();
            self.running = false;
        }
    }

    /// Archive WAL into a new directory (`dir/archive`), restarting the server for
    /// archive_mode; the directory.
    pub fn archive_wal(&mut self) -> Result<PathBuf> {
        let archive = self.dir.path().join("archive");
        std::fs::create_dir(&archive)?;
        self.chown(&archive)?;
        let to = archive.display();
        // One statement per call: ALTER SYSTEM refuses to run in a transaction block.
        self.psql("postgres", "ALTER SYSTEM SET archive_mode = on")?;
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET archive_command = 'test ! -f {to}/%f && cp %p {to}/%f'"),
        )?;
        self.stop();
        self.start_server()?;
        Ok(archive)
    }

    /// Set server parameters (ALTER SYSTEM) and restart on the same port.
    pub fn reconfigure(&mut self, settings: &[(&str, &str)]) -> Result<()> {
        for (k, v) in settings {
            // One statement per call: ALTER SYSTEM refuses to run in a transaction block.
            self.psql(
                "postgres",
                &format!("ALTER SYSTEM SET {k} = '{}'", v.replace('\'', "''")),
            )?;
        }
        self.stop();
        self.start_server()
    }

    /// The directory of the server's socket and log (`pg1-socket-path` for pgBackRest).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Wait (up to a minute) until an archive recovery has ended and the server is
    /// promoted: it takes read-only connections while it still replays.
    pub fn wait_promoted(&self) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if self.psql("postgres", "SELECT pg_is_in_recovery()")? == "f" {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("still in recovery after a minute:\n{}", self.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Connection environment for clients (what a Workload's env holds, minus the password).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), "127.0.0.1".into()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
        ]
    }

    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(format!("{PGBIN}/{program}"));
        cmd.envs(self.env());
        match &self.password {
            Some(pw) => cmd.env("PGPASSWORD", pw),
            None => cmd.env_remove("PGPASSWORD"),
        };
        cmd
    }

    /// Run SQL in `db`; returns unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = self.client("psql");
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &conninfo(db),
            "-c",
            sql,
        ]);
        let out = run_checked(&mut cmd, &format!("psql -d {db} -c {sql:?}"))?;
        Ok(String::from_utf8(out.stdout)?.trim_end().to_string())
    }

    /// pgbench against `db` with these arguments (`-i -s 50`, `-t 1000 -c 2`).
    pub fn pgbench(&self, db: &str, args: &[&str]) -> Result<()> {
        let mut cmd = self.client("pgbench");
        cmd.args(args).arg(db);
        run_checked(&mut cmd, &format!("pgbench {args:?} {db}"))?;
        Ok(())
    }

    /// `pg_dump --schema-only` of a database.
    pub fn schema(&self, db: &str) -> Result<String> {
        let mut cmd = self.client("pg_dump");
        cmd.args(["--schema-only", "-d", &conninfo(db)]);
        let text = String::from_utf8(run_checked(&mut cmd, "pg_dump --schema-only")?.stdout)?;
        // pg_dump 15.14+ wraps its output in \restrict KEY / \unrestrict KEY with a random key.
        Ok(text
            .lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// `dbname='…'`, so any database name is taken literally.
pub fn conninfo(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = self.as_server_user(Command::new(format!("{PGBIN}/pg_ctl")));
            cmd.arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-m", "immediate", "stop"]);
            let _ = cmd.output();
        }
    }
}
