//! Local processes (local mode): argv run directly, never through a shell, as coffer's own
//! user (or the Workload's `spec.runAs`), in `/`, with a clean environment made of a few basics, what the plugin adds, and
//! the Workload's env (which wins). The program is found on the Workload's PATH (else
//! coffer's) by the host, before anything a plugin sets could matter.

use super::files::{self, Scratch};
use super::run_as::RunAs;
use super::{BoxRead, BoxWrite, ExecBackend, ExitInfo, Place, RunningProcess, SpawnSpec};
use crate::wit::WitError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Variables passed through from coffer's own environment (nothing else is: coffer's
/// environment may hold cloud credentials).
const PASSTHROUGH: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME",
];

pub struct LocalExec {
    pub workload: String,
    pub env: BTreeMap<String, String>,
    /// The Workload's volumes by name (`spec.volumes`): where `install-file` may write.
    pub volumes: BTreeMap<String, PathBuf>,
    /// The user its processes run as (`spec.runAs`); None: coffer's own.
    run_as: Option<RunAs>,
    /// Secrets the host hands pgBackRest by env (a Profile's keys): only to that program,
    /// never to another the Blueprint grants (one that prints its environment would hand
    /// them to the plugin), never among `workload_env`, redacted from what the plugin reads.
    secret_env: BTreeMap<String, String>,
    scratch: Mutex<Option<Scratch>>,
}

impl LocalExec {
    pub fn new(
        workload: String,
        env: BTreeMap<String, String>,
        volumes: BTreeMap<String, PathBuf>,
    ) -> LocalExec {
        LocalExec {
            workload,
            env,
            volumes,
            run_as: None,
            secret_env: BTreeMap::new(),
            scratch: Mutex::new(None),
        }
    }

    /// The processes of Workload `w`, as its `spec.runAs` user when it has one.
    pub fn for_workload(w: &crate::model::Workload) -> Result<LocalExec, String> {
        let mut exec = LocalExec::new(
            w.name().to_string(),
            w.spec.env.clone(),
            w.spec.volumes.clone(),
        );
        if let Some(user) = &w.spec.run_as {
            exec.run_as = Some(RunAs::for_workload(user)?);
        }
        Ok(exec)
    }

    /// pgBackRest's repo1 on the Workload's Profile (`PGBACKREST_REPO1_TYPE: profile`): its
    /// locating options join the Workload's env, its keys the secret env, and a `file`
    /// Profile's directory for it is made, owned by the Workload's user.
    pub fn with_profile_repo(
        mut self,
        repo: super::profile_repo::ProfileRepo,
        keys: BTreeMap<String, String>,
    ) -> Result<LocalExec, String> {
        if let Some(dir) = &repo.dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("making pgBackRest's repository {}: {e}", dir.display()))?;
            if let Some(r) = &self.run_as {
                std::os::unix::fs::chown(dir, Some(r.uid), Some(r.gid)).map_err(|e| {
                    format!(
                        "giving pgBackRest's repository {} to {}: {e}",
                        dir.display(),
                        r.user
                    )
                })?;
            }
        }
        self.env.extend(repo.env);
        self.secret_env = keys;
        Ok(self)
    }

    fn own(&self, at: &Place) -> Result<(), WitError> {
        if let Some(c) = &at.container {
            return Err(WitError::InvalidArgument(format!(
                "container {c:?}: local workloads have no containers; leave target.container unset"
            )));
        }
        if at.workload != self.workload {
            return Err(WitError::Denied(format!(
                "workload {:?}: an action may only exec in its own workload ({:?})",
                at.workload, self.workload
            )));
        }
        Ok(())
    }

    fn scratch_file(&self, at: &Place, name: &str) -> Result<PathBuf, WitError> {
        self.own(at)?;
        let guard = self.scratch.lock().unwrap();
        let s = guard.as_ref().ok_or_else(|| {
            WitError::NotFound("this action has no scratch directory yet (exec.scratch-dir)".into())
        })?;
        s.file(name)
    }

    /// PATH the program is looked up on: the Workload's, else coffer's.
    fn search_path(&self) -> String {
        self.env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
    }
}

/// The absolute path of `program`: as given when absolute, else the first executable file
/// of that name in an absolute directory of `path` (relative entries such as `.` are
/// skipped: they would make the working directory choose the program).
pub fn resolve_program(program: &str, path: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        if !p.is_absolute() {
            return Err(format!(
                "`{program}`: a program is named by its name or an absolute path"
            ));
        }
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!("`{program}` is not an executable file"))
        };
    }
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("`{program}` was not found on the PATH ({path})"))
}

#[async_trait::async_trait]
impl ExecBackend for LocalExec {
    fn workload_env(&self) -> BTreeMap<String, String> {
        self.env.clone()
    }

    fn volumes(&self) -> Vec<PathBuf> {
        self.volumes.values().cloned().collect()
    }

    fn secret_values(&self) -> Vec<String> {
        self.secret_env.values().cloned().collect()
    }

    async fn spawn(&self, spec: SpawnSpec) -> Result<Box<dyn RunningProcess>, WitError> {
        self.own(&Place {
            workload: spec.workload.clone(),
            container: spec.container.clone(),
        })?;
        let program = &spec.argv[0];
        let resolved = resolve_program(program, &self.search_path()).map_err(|e| {
            WitError::NotFound(format!(
                "{e} of workload {} (install it or set spec.env.PATH)",
                self.workload
            ))
        })?;
        let mut cmd = Command::new(&resolved);
        // Never coffer's own working directory (a user's home, a checkout): programs get
        // absolute paths (scratch files, volumes) from the plugin.
        cmd.arg0(program)
            .args(&spec.argv[1..])
            .env_clear()
            .current_dir("/");
        for k in PASSTHROUGH {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        // The plugin's variables first, the Workload's after: the Workload's win.
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.envs(
            spec.secret_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if let Some(r) = &self.run_as {
            r.apply(&mut cmd);
        }
        cmd.envs(&self.env);
        if super::policy::program_name(program) == "pgbackrest" {
            cmd.envs(&self.secret_env);
        }
        // A mark every descendant inherits: one that left the process group (setsid, a
        // daemonizing tool) is still found and stopped when the process is cleaned up.
        let mark = run_mark();
        cmd.env(RUN_MARK, &mark);
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so killing it also kills what it started.
        .process_group(0);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WitError::NotFound(format!(
                "`{program}` ({}) could not be started in workload {}: {e}",
                resolved.display(),
                self.workload
            )),
            std::io::ErrorKind::PermissionDenied => {
                WitError::Denied(format!("`{program}` is not executable: {e}"))
            }
            _ => WitError::Io(format!("starting `{program}`: {e}")),
        })?;
        let stderr = child
            .stderr
            .take()
            .map(|err| super::keep_stderr_tail(err, spec.stderr_tail));
        let pgid = child.id();
        Ok(Box::new(LocalProcess {
            child,
            stderr,
            pgid,
            exited: false,
            mark,
        }))
    }

    async fn scratch_dir(&self, at: &Place) -> Result<String, WitError> {
        self.own(at)?;
        let mut guard = self.scratch.lock().unwrap();
        if guard.is_none() {
            let parent = self
                .env
                .get("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let scratch = Scratch::create(&parent)?;
            // The processes that write there run as the Workload's user.
            if let Some(r) = &self.run_as {
                std::os::unix::fs::chown(scratch.path(), Some(r.uid), Some(r.gid)).map_err(
                    |e| WitError::Io(format!("giving the scratch directory to {}: {e}", r.user)),
                )?;
            }
            *guard = Some(scratch);
        }
        Ok(guard.as_ref().unwrap().path().display().to_string())
    }

    fn scratch(&self, at: &Place) -> Option<String> {
        self.own(at).ok()?;
        self.scratch
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.path().display().to_string())
    }

    async fn read_file(&self, at: &Place, name: &str) -> Result<Box<dyn RunningProcess>, WitError> {
        files::reader(self.scratch_file(at, name)?)
    }

    async fn write_file(
        &self,
        at: &Place,
        name: &str,
    ) -> Result<Box<dyn RunningProcess>, WitError> {
        files::writer(self.scratch_file(at, name)?)
    }

    async fn install_file(
        &self,
        at: &Place,
        name: &str,
        volume: &str,
        dest: &str,
        replace: bool,
    ) -> Result<(), WitError> {
        let src = self.scratch_file(at, name)?;
        let dir = self.volumes.get(volume).ok_or_else(|| {
            WitError::NotFound(format!(
                "workload {} has no volume {volume:?} (spec.volumes: {})",
                self.workload,
                self.volumes.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let (dir, dest, src) = (dir.clone(), dest.to_string(), src.clone());
        tokio::task::spawn_blocking(move || files::install(&src, &dir, &dest, replace))
            .await
            .map_err(|e| WitError::Internal(e.to_string()))?
    }
}

struct LocalProcess {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
    pgid: Option<u32>,
    exited: bool,
    /// The value of [`RUN_MARK`] in its environment (and its descendants').
    mark: String,
}

/// The environment variable that marks a process and everything it starts.
const RUN_MARK: &str = "COFFER_RUN";

fn run_mark() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

/// SIGKILL every process whose environment carries `RUN_MARK=mark`: what a command left
/// running after its own group was stopped (a `setsid` child, a daemonized tool).
fn kill_marked(mark: &str) {
    let needle = format!("{RUN_MARK}={mark}");
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            // SAFETY: a plain syscall on a process that carries our mark.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

#[async_trait::async_trait]
impl RunningProcess for LocalProcess {
    fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.child.stdin.take().map(|s| Box::pin(s) as BoxWrite)
    }

    fn take_stdout(&mut self) -> Option<BoxRead> {
        self.child.stdout.take().map(|s| Box::pin(s) as BoxRead)
    }

    async fn wait(&mut self) -> Result<ExitInfo, WitError> {
        use std::os::unix::process::ExitStatusExt;
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| WitError::Io(format!("waiting for process: {e}")))?;
        self.exited = true;
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(ExitInfo {
            code: status.code(),
            signal: status.signal(),
            stderr,
        })
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.filter(|_| !self.exited) {
            // SAFETY: plain syscall; the group was created for this child by process_group(0).
            unsafe {
                libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        if !self.exited {
            self.kill();
        }
        // Whatever it started and left behind goes with it, even after it exited well.
        kill_marked(&self.mark);
        if let Some(h) = self.stderr.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_absolute_path_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("pg_dump");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:/usr/bin", dir.path().display());
        assert_eq!(resolve_program("pg_dump", &path).unwrap(), fake);
        // A relative entry (the working directory) is never searched, even when it holds
        // the program.
        let rel = dir.path().strip_prefix("/").unwrap().display().to_string();
        assert!(resolve_program("pg_dump", &format!(".:{rel}")).is_err());
        assert!(resolve_program("./pg_dump", &path).is_err());
        assert!(resolve_program("/nonexistent/x", &path).is_err());
    }

    /// A Profile's keys reach pgBackRest's env and nothing else: not another program, not
    /// the Workload's env that pins and injects flags, and they are offered for redaction.
    #[tokio::test]
    async fn profile_keys_are_in_pgbackrests_env_only() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::cap::exec::profile_repo::ProfileRepo {
            env: BTreeMap::from([("PGBACKREST_REPO1_PATH".into(), "/r".into())]),
            dir: Some(dir.path().join("pgbackrest/w")),
            url: String::new(),
            keyed: true,
        };
        let keys = BTreeMap::from([(
            "PGBACKREST_REPO1_S3_KEY_SECRET".to_string(),
            "s3cr3t-value".to_string(),
        )]);
        // A `pgbackrest` that prints its environment, first on the Workload's PATH.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("pgbackrest"), "#!/bin/sh\nexec env\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bin.join("pgbackrest"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let exec = LocalExec::new(
            "w".into(),
            BTreeMap::from([("PATH".to_string(), path)]),
            BTreeMap::new(),
        )
        .with_profile_repo(repo, keys)
        .unwrap();
        assert!(dir.path().join("pgbackrest/w").is_dir());
        assert_eq!(exec.workload_env()["PGBACKREST_REPO1_PATH"], "/r");
        assert!(!exec.workload_env().values().any(|v| v.contains("s3cr3t")));
        assert_eq!(exec.secret_values(), vec!["s3cr3t-value".to_string()]);
        let run = |program: &str| {
            let exec = &exec;
            let program = program.to_string();
            async move {
                let mut p = exec
                    .spawn(SpawnSpec {
                        workload: "w".into(),
                        container: None,
                        argv: vec![program.clone()],
                        plugin_argv: vec![program],
                        env: Vec::new(),
                        secret_env: Vec::new(),
                        stdin: false,
                        stderr_tail: 1024,
                    })
                    .await
                    .unwrap();
                let mut out = String::new();
                p.take_stdout()
                    .unwrap()
                    .read_to_string(&mut out)
                    .await
                    .unwrap();
                assert_eq!(p.wait().await.unwrap().code, Some(0));
                out
            }
        };
        let out = run("pgbackrest").await;
        assert!(
            out.contains("PGBACKREST_REPO1_S3_KEY_SECRET=s3cr3t-value"),
            "{out}"
        );
        assert!(out.contains("PGBACKREST_REPO1_PATH=/r"), "{out}");
        // Any other program the Blueprint grants gets the repository's place, not its keys.
        let other = run("env").await;
        assert!(other.contains("PGBACKREST_REPO1_PATH=/r"), "{other}");
        assert!(!other.contains("s3cr3t-value"), "{other}");
    }
}
