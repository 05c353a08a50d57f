//! pgBackRest for one PostgreSQL server: its configuration, repository, log and lock
//! directories (owned by `postgres`), and the server archiving its WAL into stanza `main`.

use crate::postgres::Postgres;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// pgBackRest's configuration and directories for one server, owned by `postgres`.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

pub fn postgres_ids() -> (u32, u32) {
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(!pw.is_null(), "no postgres user");
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Give `p` to the `postgres` user.
pub fn own(p: &Path) {
    let (u, g) = postgres_ids();
    std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
}

/// `pgbackrest --config=CONF --stanza=main ARGS` as postgres.
pub fn run<S: AsRef<std::ffi::OsStr>>(
    conf: &Path,
    args: &[S],
) -> std::io::Result<std::process::Output> {
    let (u, g) = postgres_ids();
    std::process::Command::new("pgbackrest")
        .arg(format!("--config={}", conf.display()))
        .arg("--stanza=main")
        .args(args)
        .uid(u)
        .gid(g)
        .current_dir("/tmp")
        .output()
}

impl Repo {
    /// A repository beside `pg`, and `pg` archiving its WAL into stanza `main`.
    pub fn for_server(pg: &mut Postgres) -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("coffer-pgbr-")
            .tempdir_in("/tmp")
            .unwrap();
        for d in ["", "repo", "log", "lock", "restores"] {
            let p = dir.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            own(&p);
        }
        let conf = dir.path().join("pgbackrest.conf");
        let repo = Repo { dir, conf };
        repo.write_conf(pg);
        let archive = format!(
            "pgbackrest --config={} --stanza=main archive-push %p",
            repo.conf.display()
        );
        pg.reconfigure(&[("archive_mode", "on"), ("archive_command", &archive)])
            .unwrap();
        // The port survives the restart, but say so if it did not.
        repo.write_conf(pg);
        repo
    }

    pub fn write_conf(&self, pg: &Postgres) {
        let d = self.dir.path().display();
        std::fs::write(
            &self.conf,
            format!(
                "[global]\nrepo1-path={d}/repo\nrepo1-retention-full=99\nlog-path={d}/log\nlock-path={d}/lock\nlog-level-file=off\n\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
                pg.data_dir().display(),
                pg.port,
                pg.socket_dir().display()
            ),
        )
        .unwrap();
        own(&self.conf);
    }

    pub fn restores(&self) -> PathBuf {
        self.dir.path().join("restores")
    }

    /// pgBackRest run directly, as postgres.
    pub fn pgbackrest(&self, args: &[&str]) -> String {
        let out = run(&self.conf, args).unwrap();
        assert!(
            out.status.success(),
            "pgbackrest {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn info(&self) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.pgbackrest(&["--output=json", "info"])).unwrap();
        v[0].clone()
    }

    pub fn labels(&self) -> Vec<String> {
        self.info()["backup"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["label"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn workload(&self, name: &str) -> String {
        format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  blueprint: pgbackrest\n  runAs: postgres\n  env: {{PGBACKREST_CONFIG: \"{}\", PGBACKREST_STANZA: main}}\n  volumes: {{restores: \"{}\"}}\n",
            self.conf.display(),
            self.restores().display()
        )
    }
}
