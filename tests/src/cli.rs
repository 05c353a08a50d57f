//! The `coffer` binary driven as a user would: its own state dir, real arguments, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Cli {
    bin: PathBuf,
    pub home: tempfile::TempDir,
    cache: Option<PathBuf>,
}

/// What a command did.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Cli {
    /// `bin` is `env!("CARGO_BIN_EXE_coffer")`; `cache` a compile cache shared between tests.
    pub fn new(bin: &str, cache: Option<&Path>) -> Cli {
        crate::ensure_packages();
        Cli {
            bin: PathBuf::from(bin),
            home: tempfile::Builder::new()
                .prefix("coffer-home-")
                .tempdir()
                .expect("temp home"),
            cache: cache.map(Path::to_path_buf),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("COFFER_HOME", self.home.path())
            .env("COFFER_LOG", "info")
            .env_remove("PGPASSWORD");
        if let Some(cache) = &self.cache {
            c.env("COFFER_CACHE_DIR", cache);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("running coffer"))
    }

    /// Run and require success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(
            r.ok,
            "coffer {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    /// `coffer apply -f -` with this YAML.
    pub fn apply(&self, yaml: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running coffer apply");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn catalog_file(&self) -> PathBuf {
        self.home.path().join("catalog.db")
    }

    pub fn location_dir(&self) -> PathBuf {
        self.home.path().join("locations").join("default")
    }
}
