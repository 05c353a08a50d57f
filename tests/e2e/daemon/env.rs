//! What the daemon tests share: the simulator with a Profile, daemons as processes, the
//! CLI against the simulator, waiting on ActionSets.

pub use coffer_tests::k8s_openapi::api::coordination::v1::Lease;
pub use coffer_tests::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use coffer_tests::kube::config::{KubeConfigOptions, Kubeconfig};
pub use coffer_tests::kube::{Client, Config};
use coffer_tests::kube_sim::KubeSim;
pub use coffer_tests::postgres::{PGBIN, Postgres};
pub use serde_json::{Value, json};
pub use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
pub use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");
/// The daemon's identity towards the simulator: its requests are checked against
/// deploy/rbac.yaml.
pub const DAEMON_USER: &str = "coffer-daemon";

pub fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache")
}

pub struct Env {
    pub sim: KubeSim,
    pub client: Client,
    pub location: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

pub fn coffer_api(c: &Client, kind: &str, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("coffer.dev", "v1alpha1", kind));
    Api::namespaced_with(c.clone(), ns, &ar)
}

pub fn apps(c: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
    Api::namespaced_with(c.clone(), ns, &ar)
}

pub fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

impl Env {
    pub async fn start() -> Env {
        let sim = KubeSim::start();
        let kc = Kubeconfig::read_from(&sim.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let location = tempfile::tempdir().unwrap();
        // Encrypted, with the identity restores need in a Secret the Profile references.
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(
            client.clone(),
            "coffer",
        )
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "coffer-age"},
                    "stringData": {"identity": id.to_string().expose_secret()}}))
            .unwrap(),
        )
        .await
        .unwrap();
        coffer_api(&client, "Profile", "coffer")
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                    "metadata": {"name": "default"},
                    "spec": {"type": "file", "path": location.path(),
                             "encryption": {"recipients": [id.to_public().to_string()],
                                            "identity": {"secret": {"name": "coffer-age", "key": "identity"}}}}})),
            )
            .await
            .unwrap();
        Env {
            sim,
            client,
            location,
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// A Blueprint in namespace coffer running the hostile test plugin: `spec` without its
    /// `plugin`.
    pub async fn hostile_blueprint(&self, name: &str, mut spec: Value) {
        spec["plugin"] = json!({"path": coffer_tests::test_plugin("hostile")});
        coffer_api(&self.client, "Blueprint", "coffer")
            .create(
                &PostParams::default(),
                &obj(
                    json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                    "metadata": {"name": name}, "spec": spec}),
                ),
            )
            .await
            .unwrap();
    }

    /// A StatefulSet in namespace db with one container and this env.
    pub async fn statefulset(&self, name: &str, env: Vec<(String, String)>, annotations: Value) {
        let env: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        apps(&self.client, "db")
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "postgres", "image": "postgres:15", "env": env}]}}}})),
            )
            .await
            .unwrap();
    }

    pub fn daemon(&self, identity: &str, metrics_port: u16) -> Daemon {
        let home = self.work.path().join(format!("home-{identity}"));
        let log = self.work.path().join(format!("{identity}.log"));
        let child = Command::new(BIN)
            .args(["daemon", "--kubeconfig"])
            .arg(self.sim.kubeconfig_as(DAEMON_USER))
            .args([
                "-n",
                "coffer",
                "--identity",
                identity,
                "--lease-duration",
                "3s",
                "--runner-timeout",
                "4s",
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .env("COFFER_HOME", &home)
            .env("COFFER_CACHE_DIR", cache())
            .env("COFFER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting coffer daemon");
        Daemon { child, log }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.sim.kubeconfig)
            .env("COFFER_HOME", self.work.path().join("home-cli"))
            .env("COFFER_CACHE_DIR", cache())
            .output()
            .unwrap()
    }

    /// `coffer backup <target> -n db --local-run -o json`: the finished ActionSet and the
    /// CLI's stderr (for failure messages).
    pub fn local_backup(&self, target: &str) -> (Value, String) {
        let out = self.cli(&["backup", target, "-n", "db", "--local-run", "-o", "json"]);
        let set = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (set, text)
    }

    pub async fn action_set(&self, spec: Value) -> String {
        let o = coffer_api(&self.client, "ActionSet", "db")
            .create(
                &PostParams::default(),
                &obj(
                    json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
                    "metadata": {"generateName": "test-"}, "spec": spec}),
                ),
            )
            .await
            .unwrap();
        o.metadata.name.unwrap()
    }

    pub async fn get(&self, kind: &str, name: &str) -> Option<DynamicObject> {
        coffer_api(&self.client, kind, "db")
            .get_opt(name)
            .await
            .unwrap()
    }

    /// Wait until the ActionSet's status satisfies `done`; its status then.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self
                .get("ActionSet", name)
                .await
                .and_then(|o| o.data.get("status").cloned())
                .unwrap_or(Value::Null);
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ActionSet {name}: {what} did not happen; status: {status:#}\n{}",
                self.daemon_logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tail of every daemon's log, for a failure message.
    pub fn daemon_logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.work.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                out += &format!("--- {} (last 40 lines)\n{tail}\n", path.display());
            }
        }
        out
    }

    pub async fn finished(&self, name: &str) -> Value {
        self.wait_status(name, "finish", |s| {
            matches!(s["phase"].as_str(), Some("Completed" | "Failed"))
        })
        .await
    }

    /// Run an ActionSet that must fail, with `why` in its error; its status.
    pub async fn expect_failure(&self, spec: Value, why: &str) -> Value {
        let name = self.action_set(spec).await;
        let status = self.finished(&name).await;
        assert_eq!(status["phase"], "Failed", "{status:#}");
        let error = status["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "wanted {why:?} in: {error}");
        status
    }

    /// Every request the daemon made is allowed by the shipped RBAC (namespace db opted in).
    pub fn assert_daemon_rbac(&self) {
        let rbac = coffer_tests::rbac::shipped(&["db"]);
        let seen = self.sim.requests();
        assert!(
            seen.iter().any(|s| s.user.as_deref() == Some(DAEMON_USER)),
            "the daemon made no request"
        );
        let refused = coffer_tests::rbac::refused(&seen, DAEMON_USER, &rbac);
        assert!(
            refused.is_empty(),
            "deploy/rbac.yaml does not allow what the daemon did:\n{refused:#?}"
        );
    }

    pub fn objects_under(&self, prefix: &str) -> Vec<PathBuf> {
        coffer_tests::files_under(&self.location.path().join(prefix))
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A pod env that points the PostgreSQL tools at `pg`.
pub fn pg_env(pg: &Postgres) -> Vec<(String, String)> {
    let mut env = pg.env();
    env.push(("PATH".into(), format!("{PGBIN}:/usr/bin:/bin")));
    env
}

pub fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A Blueprint running the test plugin, whose `hang-after-write` backup writes an object
/// and then waits in a 30 s `sleep` in the pod.
pub async fn hanging_blueprint(env: &Env) {
    let plugin = coffer_tests::test_plugin("hostile");
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "hangs"},
                "spec": {"plugin": {"path": plugin},
                         "grants": {"exec": ["sleep **", "echo **"], "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "hang-after-write"}}}})),
        )
        .await
        .unwrap();
    env.statefulset("app", vec![], json!({"coffer.dev/blueprint": "hangs"}))
        .await;
}

/// Wait until a hanging backup has written its object; its prefix.
pub async fn wait_written(env: &Env, name: &str) -> String {
    let status = env
        .wait_status(name, "write its first object", |s| {
            s["phase"] == "Running"
                && s["prefix"].as_str().is_some_and(|p| {
                    !coffer_tests::files_under(&env.location.path().join(p)).is_empty()
                })
        })
        .await;
    status["prefix"].as_str().unwrap().to_string()
}

pub fn tree_digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    coffer_tests::files_under(dir)
        .into_iter()
        .map(|f| {
            (
                f.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&f).unwrap(),
            )
        })
        .collect()
}
