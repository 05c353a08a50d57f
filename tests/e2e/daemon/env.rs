//! What the daemon tests share: the simulator with a Profile, daemons as processes, the
//! CLI against the simulator, waiting on ActionSets.

pub use coffer_tests::k8s_openapi::api::coordination::v1::Lease;
pub use coffer_tests::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use coffer_tests::kube::config::{KubeConfigOptions, Kubeconfig};
pub use coffer_tests::kube::{Client, Config};
use coffer_tests::kube_real::RealKube;
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

/// Where a test runs: the real control plane (RBAC, schemas and controllers enforced), or
/// the simulator for what the real one cannot do here (CSI snapshots, pod volumes on this
/// machine, a record of every request).
pub enum Cluster {
    Real(RealKube),
    Sim(KubeSim),
}

pub struct Env {
    pub cluster: Cluster,
    pub client: Client,
    /// The CLI's (an administrator's) and the daemon's (the shipped ServiceAccount's on the
    /// real server) credentials.
    pub kubeconfig: PathBuf,
    pub daemon_kubeconfig: PathBuf,
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
    /// On the real control plane: coffer's CRDs and deploy/rbac.yaml applied, namespace db
    /// opted in (deploy/examples/namespace.yaml), the daemon running as ServiceAccount
    /// coffer/coffer.
    pub async fn start() -> Env {
        let kube = RealKube::start();
        let client = kube.client().await;
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let read = |f: &str| std::fs::read_to_string(deploy.join(f)).unwrap();
        kube.apply(&read("crds.yaml")).await;
        kube.apply(&read("rbac.yaml")).await;
        kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n")
            .await;
        kube.apply(&read("examples/namespace.yaml")).await;
        let daemon_kubeconfig = kube.service_account_kubeconfig("coffer", "coffer").await;
        let kubeconfig = kube.kubeconfig.clone();
        Env::prepare(Cluster::Real(kube), client, kubeconfig, daemon_kubeconfig).await
    }

    /// On the simulator, whose requests the daemon makes are checked against
    /// deploy/rbac.yaml by [`Env::assert_daemon_rbac`].
    pub async fn start_sim() -> Env {
        let sim = KubeSim::start();
        let kc = Kubeconfig::read_from(&sim.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let kubeconfig = sim.kubeconfig.clone();
        let daemon_kubeconfig = sim.kubeconfig_as(DAEMON_USER);
        Env::prepare(Cluster::Sim(sim), client, kubeconfig, daemon_kubeconfig).await
    }

    /// Namespace `name` (the simulator has every namespace already).
    pub async fn namespace(&self, name: &str) {
        if let Cluster::Real(kube) = &self.cluster {
            kube.apply(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"
            ))
            .await;
        }
    }

    /// Namespace `name`, opted in as deploy/examples/namespace.yaml opts in `db` (the real
    /// control plane).
    pub async fn opted_in_namespace(&self, name: &str) {
        self.namespace(name).await;
        if let Cluster::Real(kube) = &self.cluster {
            let opt_in = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/namespace.yaml"),
            )
            .unwrap()
            .replace("namespace: db", &format!("namespace: {name}"));
            kube.apply(&opt_in).await;
        }
    }

    pub fn sim(&self) -> &KubeSim {
        match &self.cluster {
            Cluster::Sim(s) => s,
            Cluster::Real(_) => panic!("this test needs the simulator (Env::start_sim)"),
        }
    }

    async fn prepare(
        cluster: Cluster,
        client: Client,
        kubeconfig: PathBuf,
        daemon_kubeconfig: PathBuf,
    ) -> Env {
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
            cluster,
            client,
            kubeconfig,
            daemon_kubeconfig,
            location,
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// Signer `aws` in namespace coffer for `endpoint`, its keys in Secret `aws-keys` there.
    pub async fn aws_signer(&self, endpoint: &str, id: &str, secret: &str) {
        Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(
            self.client.clone(),
            "coffer",
        )
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "aws-keys"},
                "stringData": {"id": id, "secret": secret}}))
            .unwrap(),
        )
        .await
        .unwrap();
        coffer_api(&self.client, "Signer", "coffer")
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Signer",
                    "metadata": {"name": "aws"},
                    "spec": {"type": "aws-sigv4", "region": "us-east-1", "endpoint": endpoint,
                             "credentials": {"accessKeyId": {"secret": {"name": "aws-keys", "key": "id"}},
                                             "secretAccessKey": {"secret": {"name": "aws-keys", "key": "secret"}}}}})),
            )
            .await
            .unwrap();
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

    /// A StatefulSet in namespace db with one container and this env; on the real control
    /// plane, once its pod runs (on the kwok node) with that env.
    pub async fn statefulset(&self, name: &str, env: Vec<(String, String)>, annotations: Value) {
        self.statefulset_in("db", name, env, annotations).await
    }

    /// [`Env::statefulset`] in namespace `ns`.
    pub async fn statefulset_in(
        &self,
        ns: &str,
        name: &str,
        env: Vec<(String, String)>,
        annotations: Value,
    ) {
        let env: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        let mut pod_spec =
            json!({"containers": [{"name": "postgres", "image": "postgres:15", "env": env}]});
        if let Cluster::Real(_) = self.cluster {
            pod_spec["nodeName"] = json!(coffer_tests::kube_real::NODE);
        }
        apps(&self.client, ns)
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
                    "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": pod_spec}}})),
            )
            .await
            .unwrap();
        if let Cluster::Real(kube) = &self.cluster {
            kube.pod_running(ns, &format!("{name}-0")).await;
        }
    }

    pub fn daemon(&self, identity: &str, metrics_port: u16) -> Daemon {
        self.daemon_with(identity, metrics_port, &[])
    }

    /// [`Env::daemon`] with more flags.
    pub fn daemon_with(&self, identity: &str, metrics_port: u16, flags: &[&str]) -> Daemon {
        self.daemon_env(identity, metrics_port, flags, &[])
    }

    /// [`Env::daemon_with`] with more environment (e.g. `COFFER_TEST_CLOCK`).
    pub fn daemon_env(
        &self,
        identity: &str,
        metrics_port: u16,
        flags: &[&str],
        envs: &[(&str, &Path)],
    ) -> Daemon {
        let home = self.work.path().join(format!("home-{identity}"));
        let log = self.work.path().join(format!("{identity}.log"));
        let child = Command::new(BIN)
            .args(["daemon", "--kubeconfig"])
            .arg(&self.daemon_kubeconfig)
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
            .args(flags)
            .env("COFFER_HOME", &home)
            .env("COFFER_CACHE_DIR", cache())
            .env("COFFER_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting coffer daemon");
        Daemon { child, log }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_as(&self.kubeconfig, args)
    }

    /// The CLI with another user's credentials.
    pub fn cli_as(&self, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
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
        self.action_set_in("db", spec).await
    }

    /// An ActionSet in namespace `ns`; its name.
    pub async fn action_set_in(&self, ns: &str, spec: Value) -> String {
        let o = coffer_api(&self.client, "ActionSet", ns)
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
        self.get_in("db", kind, name).await
    }

    pub async fn get_in(&self, ns: &str, kind: &str, name: &str) -> Option<DynamicObject> {
        coffer_api(&self.client, kind, ns)
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
        self.wait_status_in("db", name, what, done).await
    }

    pub async fn wait_status_in(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self
                .get_in(ns, "ActionSet", name)
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
        self.finished_in("db", name).await
    }

    /// The status of ActionSet `ns/name` once it is Completed or Failed.
    pub async fn finished_in(&self, ns: &str, name: &str) -> Value {
        self.wait_status_in(ns, name, "finish", |s| {
            matches!(s["phase"].as_str(), Some("Completed" | "Failed"))
        })
        .await
    }

    /// Run an ActionSet in namespace db that must complete; its status.
    pub async fn completed(&self, spec: Value) -> Value {
        let name = self.action_set(spec).await;
        let status = self.finished(&name).await;
        assert_eq!(
            status["phase"],
            "Completed",
            "{status:#}\n{}",
            self.daemon_logs()
        );
        status
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

    /// Every request the daemon made is allowed by the shipped RBAC (namespace db opted
    /// in): on the real server, none of its requests was refused (the audit log); on the
    /// simulator, deploy/rbac.yaml evaluated over the requests it recorded.
    pub fn assert_daemon_rbac(&self) {
        let kube = match &self.cluster {
            Cluster::Real(kube) => kube,
            Cluster::Sim(sim) => {
                let rbac = coffer_tests::rbac::shipped(&["db"]);
                let seen = sim.requests();
                assert!(
                    seen.iter().any(|s| s.user.as_deref() == Some(DAEMON_USER)),
                    "the daemon made no request"
                );
                let refused = coffer_tests::rbac::refused(&seen, DAEMON_USER, &rbac);
                assert!(
                    refused.is_empty(),
                    "deploy/rbac.yaml does not allow what the daemon did:\n{refused:#?}"
                );
                return;
            }
        };
        let daemon = "system:serviceaccount:coffer:coffer";
        assert!(
            kube.audit().iter().any(|r| r["user"]["username"] == daemon),
            "the daemon made no request"
        );
        let refused: Vec<String> = kube
            .refused(daemon)
            .iter()
            .map(|r| {
                format!(
                    "{} {} as {}",
                    r["verb"], r["requestURI"], r["impersonatedUser"]["username"]
                )
            })
            .collect();
        assert!(
            refused.is_empty(),
            "the API server refused the daemon (ServiceAccount coffer/coffer under deploy/rbac.yaml):\n{}",
            refused.join("\n")
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

pub use coffer_tests::tree_contents as tree_digest;
