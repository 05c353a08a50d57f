//! `coffer daemon` against the Kubernetes API simulator (tests/src/kube_sim): a StatefulSet
//! whose pod exec reaches a real local PostgreSQL, protected by annotation and by a
//! BlueprintBinding; backups and restores through ActionSets and the CLI; cancellation,
//! deadlines, a daemon killed mid-action, and two replicas with one Lease.

use coffer_tests::k8s_openapi::api::coordination::v1::Lease;
use coffer_tests::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use coffer_tests::kube::config::{KubeConfigOptions, Kubeconfig};
use coffer_tests::kube::{Client, Config};
use coffer_tests::kube_sim::KubeSim;
use coffer_tests::postgres::{PGBIN, Postgres};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache")
}

struct Env {
    sim: KubeSim,
    client: Client,
    location: tempfile::TempDir,
    work: tempfile::TempDir,
}

fn coffer_api(c: &Client, kind: &str, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("coffer.dev", "v1alpha1", kind));
    Api::namespaced_with(c.clone(), ns, &ar)
}

fn apps(c: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
    Api::namespaced_with(c.clone(), ns, &ar)
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

impl Env {
    async fn start() -> Env {
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

    /// A StatefulSet in namespace db with one container and this env.
    async fn statefulset(&self, name: &str, env: Vec<(String, String)>, annotations: Value) {
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

    fn daemon(&self, identity: &str, metrics_port: u16) -> Daemon {
        let home = self.work.path().join(format!("home-{identity}"));
        let log = self.work.path().join(format!("{identity}.log"));
        let child = Command::new(BIN)
            .args(["daemon", "--kubeconfig"])
            .arg(&self.sim.kubeconfig)
            .args([
                "-n",
                "coffer",
                "--identity",
                identity,
                "--lease-duration",
                "3s",
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

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.sim.kubeconfig)
            .env("COFFER_HOME", self.work.path().join("home-cli"))
            .env("COFFER_CACHE_DIR", cache())
            .output()
            .unwrap()
    }

    async fn action_set(&self, spec: Value) -> String {
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

    async fn get(&self, kind: &str, name: &str) -> Option<DynamicObject> {
        coffer_api(&self.client, kind, "db")
            .get_opt(name)
            .await
            .unwrap()
    }

    /// Wait until the ActionSet's status satisfies `done`; its status then.
    async fn wait_status(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
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
                "ActionSet {name}: {what} did not happen; status: {status:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn finished(&self, name: &str) -> Value {
        self.wait_status(name, "finish", |s| {
            matches!(s["phase"].as_str(), Some("Completed" | "Failed"))
        })
        .await
    }

    /// Run an ActionSet that must fail, with `why` in its error; its status.
    async fn expect_failure(&self, spec: Value, why: &str) -> Value {
        let name = self.action_set(spec).await;
        let status = self.finished(&name).await;
        assert_eq!(status["phase"], "Failed", "{status:#}");
        let error = status["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "wanted {why:?} in: {error}");
        status
    }

    fn objects_under(&self, prefix: &str) -> Vec<PathBuf> {
        coffer_tests::files_under(&self.location.path().join(prefix))
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn kill(&mut self) {
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
fn pg_env(pg: &Postgres) -> Vec<(String, String)> {
    let mut env = pg.env();
    env.push(("PATH".into(), format!("{PGBIN}:/usr/bin:/bin")));
    env
}

fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

const TABLE: &str = "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2));
INSERT INTO items SELECT g, 'item ' || md5(g::text), g * 1.25 FROM generate_series(1, 5000) g;";
const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM items x";

#[tokio::test]
async fn annotated_and_bound_workloads_back_up_and_restore_through_the_daemon() {
    let env = Env::start().await;
    let pg = Postgres::start(Some("pod-secret-pw")).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", TABLE).unwrap();
    let original = pg.psql("shop", CHECK).unwrap();
    // The password reaches the plugin's `password` secret from a Secret in the namespace.
    Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), "db")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "pg-auth"}, "stringData": {"password": "pod-secret-pw"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    env.statefulset(
        "pg",
        pg_env(&pg),
        json!({"coffer.dev/blueprint": "postgres-logical",
               "secret.coffer.dev/password": "pg-auth/password"}),
    )
    .await;
    // Without a daemon, --local-run runs the ActionSet in the CLI process.
    let out = env.cli(&["backup", "statefulset/pg", "-n", "db", "--local-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sets = coffer_api(&env.client, "ActionSet", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    let local = &sets.items[0];
    assert_eq!(local.data["status"]["phase"], "Completed");
    assert!(
        local.data["status"]["runner"]
            .as_str()
            .unwrap()
            .starts_with("cli-")
    );
    let local_rp = local.data["status"]["restorePoint"].as_str().unwrap();
    assert!(env.get("RestorePoint", local_rp).await.is_some());

    let port = coffer_tests::free_port();
    let _daemon = env.daemon("coffer-a", port);

    // 1. The annotation, through the CLI: it creates an ActionSet and follows it.
    let out = env.cli(&["backup", "statefulset/pg", "-n", "db"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        _daemon.log()
    );
    let rp = stdout
        .split("RestorePoint ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the CLI names the restore point")
        .to_string();
    let rp_obj = env
        .get("RestorePoint", &rp)
        .await
        .expect("RestorePoint resource");
    assert_eq!(rp_obj.data["spec"]["workload"], "statefulset/pg");
    assert_eq!(rp_obj.data["spec"]["blueprint"], "postgres-logical");
    let prefix = rp_obj.data["spec"]["prefix"].as_str().unwrap().to_string();
    assert!(
        prefix.starts_with("restorepoints/db/statefulset-pg/"),
        "{prefix}"
    );
    let stored = env.objects_under(&prefix);
    assert!(
        stored
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".zst.age")),
        "the Profile's encryption applies: {stored:?}"
    );
    let sets = coffer_api(&env.client, "ActionSet", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    let set = sets
        .items
        .iter()
        .find(|s| s.data["status"]["restorePoint"] == rp.as_str())
        .unwrap();
    assert_eq!(set.data["status"]["phase"], "Completed");
    assert_eq!(set.data["status"]["runner"], "coffer-a");
    assert!(set.metadata.finalizers.as_ref().is_none_or(Vec::is_empty));
    let audit = set.data["status"]["audit"].to_string();
    assert!(
        audit.contains("pg_dump"),
        "the audit trail names the pod exec: {audit}"
    );
    assert!(
        !set.data.to_string().contains("pod-secret-pw"),
        "the password leaked into the ActionSet"
    );

    // Lose the data, restore through the CLI, compare.
    pg.psql("shop", "DROP TABLE items").unwrap();
    let out = env.cli(&["restore", "statefulset/pg", "--from", &rp, "-n", "db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg.psql("shop", CHECK).unwrap(),
        original,
        "restored rows differ"
    );

    // 2. A BlueprintBinding instead: the annotation goes, a Blueprint resource and a
    // binding come; the binding's Blueprint is used.
    apps(&env.client, "db")
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"coffer.dev/blueprint": null}}})),
        )
        .await
        .unwrap();
    let bp_yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/postgres-logical.yaml"),
    )
    .unwrap();
    let mut bp: Value = serde_yaml_ng::from_str(&bp_yaml).unwrap();
    bp["metadata"]["name"] = json!("pg-bound");
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(&PostParams::default(), &obj(bp))
        .await
        .unwrap();
    coffer_api(&env.client, "BlueprintBinding", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "BlueprintBinding",
                "metadata": {"name": "databases"},
                "spec": {"blueprint": "pg-bound",
                         "match": {"kinds": ["StatefulSet"], "namespaces": ["d*"], "labels": {"app": "pg"}}}})),
        )
        .await
        .unwrap();
    let out = env.cli(&["get", "bindings", "-A"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l.contains("statefulset/pg")
            && l.contains("pg-bound")
            && l.contains("BlueprintBinding databases")),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.psql(
        "shop",
        "UPDATE items SET price = price + 1 WHERE id % 7 = 0",
    )
    .unwrap();
    let changed = pg.psql("shop", CHECK).unwrap();
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/pg"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    assert_eq!(status["blueprint"], "pg-bound");
    let rp2 = status["restorePoint"].as_str().unwrap().to_string();
    pg.psql("shop", "DELETE FROM items WHERE id > 100").unwrap();
    let name = env
        .action_set(json!({"action": "restore", "workload": "statefulset/pg", "restorePoint": rp2}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    assert_eq!(
        pg.psql("shop", CHECK).unwrap(),
        changed,
        "restored rows differ"
    );

    // Unprotected workloads are refused with what to do.
    env.statefulset("other", pg_env(&pg), json!({})).await;
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/other"}),
        "StatefulSet db/other is not protected by a Blueprint",
    )
    .await;

    // A Profile whose Secret is missing fails the action, naming both.
    coffer_api(&env.client, "Profile", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                "metadata": {"name": "broken"},
                "spec": {"type": "file", "path": env.location.path(),
                         "encryption": {"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
                                        "identity": {"secret": {"name": "nope", "key": "identity"}}}}})),
        )
        .await
        .unwrap();
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/pg", "profile": "broken"}),
        "Secret coffer/nope (for Profile coffer/broken spec.encryption.identity) not found",
    )
    .await;

    // Deleting a restore point through an ActionSet removes its objects and its resource.
    let out = env.cli(&["delete", &rp, "-n", "db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.get("RestorePoint", &rp).await.is_none());
    assert!(env.objects_under(&prefix).is_empty());

    // Events and metrics say what happened.
    let events = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "db",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
    )
    .list(&ListParams::default())
    .await
    .unwrap();
    let reasons: Vec<String> = events
        .items
        .iter()
        .filter_map(|e| e.data["reason"].as_str().map(String::from))
        .collect();
    assert!(reasons.iter().any(|r| r == "Completed"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Failed"), "{reasons:?}");
    let m = metrics(port);
    assert!(
        m.contains("coffer_actions_total{action=\"backup\",result=\"completed\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("coffer_actions_total{action=\"restore\",result=\"completed\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("coffer_actions_total{action=\"backup\",result=\"failed\"} 2"),
        "{m}"
    );
    assert!(m.contains("coffer_leader 1"), "{m}");
}

/// A Blueprint running the test plugin, whose `hang-after-write` backup writes an object
/// and then waits in a 30 s `sleep` in the pod.
async fn hanging_blueprint(env: &Env) {
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
async fn wait_written(env: &Env, name: &str) -> String {
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

#[tokio::test]
async fn cancel_delete_and_deadline_stop_actions_and_remove_partial_backups() {
    let env = Env::start().await;
    hanging_blueprint(&env).await;
    let _daemon = env.daemon("coffer-c", coffer_tests::free_port());

    // spec.cancel
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    let prefix = wait_written(&env, &name).await;
    coffer_api(&env.client, "ActionSet", "db")
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Failed");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("cancelled (spec.cancel)"),
        "{status:#}"
    );
    assert!(status.get("restorePoint").is_none());
    assert!(
        env.objects_under(&prefix).is_empty(),
        "the partial backup stayed"
    );

    // Deleting it: cancelled, cleaned, then gone (the finalizer held it until then).
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    let prefix = wait_written(&env, &name).await;
    let set = env.get("ActionSet", &name).await.unwrap();
    assert_eq!(
        set.metadata.finalizers.as_deref(),
        Some(&["coffer.dev/actionset".to_string()][..])
    );
    coffer_api(&env.client, "ActionSet", "db")
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.get("ActionSet", &name).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the deleted ActionSet is still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        env.objects_under(&prefix).is_empty(),
        "the partial backup stayed"
    );

    // SIGTERM: the daemon stops what it runs, cleanly, before it exits.
    let mut stopping = env.daemon("coffer-t", coffer_tests::free_port());
    drop(_daemon);
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    let prefix = wait_written(&env, &name).await;
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(stopping.child.id() as i32, libc::SIGTERM);
    }
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("the coffer daemon was stopped"),
        "{status:#}"
    );
    assert!(
        env.objects_under(&prefix).is_empty(),
        "the partial backup stayed"
    );
    assert!(
        stopping.child.wait().unwrap().success(),
        "{}",
        stopping.log()
    );
    let lease = Api::<Lease>::namespaced(env.client.clone(), "coffer")
        .get("coffer-daemon")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        None,
        "a stopped daemon releases the Lease"
    );
    let _daemon = env.daemon("coffer-c", coffer_tests::free_port());

    // A deadline.
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/app", "deadline": "3s"}),
        "deadline of 3s passed",
    )
    .await;
    let rps = coffer_api(&env.client, "RestorePoint", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(rps.items.is_empty(), "a stopped backup made a RestorePoint");
    // A bad deadline is refused with the field named.
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/app", "deadline": "soon"}),
        "spec.deadline",
    )
    .await;
}

#[tokio::test]
async fn a_daemon_killed_mid_action_never_leaves_it_running_and_only_the_lease_holder_reconciles() {
    let env = Env::start().await;
    hanging_blueprint(&env).await;
    let (port_a, port_b) = (coffer_tests::free_port(), coffer_tests::free_port());
    let mut a = env.daemon("coffer-a", port_a);
    let lease_holder = || async {
        Api::<Lease>::namespaced(env.client.clone(), "coffer")
            .get_opt("coffer-daemon")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_holder().await.as_deref() != Some("coffer-a") {
        assert!(
            Instant::now() < deadline,
            "coffer-a never took the Lease:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = env.daemon("coffer-b", port_b);

    // Killed mid-action: the backup has written an object and waits in the pod.
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    let prefix = wait_written(&env, &name).await;
    let status = env.get("ActionSet", &name).await.unwrap().data["status"].clone();
    assert_eq!(
        status["runner"], "coffer-a",
        "only the Lease holder runs actions"
    );
    assert!(
        metrics(port_b).contains("coffer_leader 0"),
        "{}",
        metrics(port_b)
    );
    a.kill();

    // The standby takes the Lease once it expires and settles the orphan.
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    let why = status["error"].as_str().unwrap();
    assert!(
        why.contains("the coffer daemon running it (coffer-a) stopped before it finished"),
        "{why}"
    );
    assert!(why.contains("partial object(s) were removed"), "{why}");
    assert!(
        env.objects_under(&prefix).is_empty(),
        "the partial backup stayed"
    );
    assert_eq!(lease_holder().await.as_deref(), Some("coffer-b"));
    let rps = coffer_api(&env.client, "RestorePoint", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        rps.items.is_empty(),
        "an unfinished backup made a RestorePoint"
    );

    // The new leader runs new work; the restarted one stands by.
    let mut a = env.daemon("coffer-a", port_a);
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app", "deadline": "1s"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["runner"], "coffer-b", "{status:#}");
    assert!(
        metrics(port_a).contains("coffer_leader 0"),
        "{}",
        metrics(port_a)
    );

    // Killed and restarted with the same identity: it takes its own Lease back at once and
    // settles what it was running.
    b.kill();
    a.kill();
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    let mut b = env.daemon("coffer-b", port_b);
    let prefix = wait_written(&env, &name).await;
    b.kill();
    let _b = env.daemon("coffer-b", port_b);
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    assert!(env.objects_under(&prefix).is_empty());
    drop(a);
}

fn tree_digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

#[tokio::test]
async fn csi_snapshots_and_task_pods_work_next_to_the_data() {
    use coffer_tests::k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let env = Env::start().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "db");
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sim",
                         "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dir = loop {
        let c = claims.get("data").await.unwrap();
        if let Some(p) = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(coffer_tests::kube_sim::PATH_ANNOTATION))
        {
            break PathBuf::from(p);
        }
        assert!(Instant::now() < deadline, "the claim was never bound");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    std::fs::create_dir_all(dir.join("base/16384")).unwrap();
    std::fs::write(
        dir.join("base/16384/1259"),
        coffer_tests::random_hex(300_000),
    )
    .unwrap();
    std::fs::write(dir.join("PG_VERSION"), "15\n").unwrap();
    let original = tree_digest(&dir);

    let plugin = coffer_tests::test_plugin("hostile");
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "snaps"},
                "spec": {"plugin": {"path": plugin},
                         "grants": {"snapshot": true, "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "snapshot", "pvc": "data", "target": "data-restored"}}}})),
        )
        .await
        .unwrap();
    env.statefulset("vol", vec![], json!({"coffer.dev/blueprint": "snaps"}))
        .await;
    let _daemon = env.daemon("coffer-s", coffer_tests::free_port());
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/vol"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    let out = &status["outputs"];
    assert_eq!(out["createdReady"], "false", "the snapshot was waited for");
    assert!(out["restoreSize"].as_str().unwrap().parse::<u64>().unwrap() >= 300_000);
    assert!(
        out["conflict"]
            .as_str()
            .unwrap()
            .contains("data-restored exists"),
        "{out}"
    );
    assert!(
        out["denied"]
            .as_str()
            .unwrap()
            .contains("namespace elsewhere"),
        "{out}"
    );
    let snap = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "db",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        )),
    )
    .get(out["snapshot"].as_str().unwrap())
    .await
    .unwrap();
    assert_eq!(
        snap.data["spec"]["source"]["persistentVolumeClaimName"],
        "data"
    );
    assert_eq!(snap.data["status"]["readyToUse"], true);
    assert_eq!(snap.metadata.labels.unwrap()["purpose"], "test");
    // The new claim holds exactly what the volume held when the snapshot was cut.
    std::fs::write(dir.join("PG_VERSION"), "changed after the snapshot\n").unwrap();
    let restored = claims.get("data-restored").await.unwrap();
    let spec = restored.spec.unwrap();
    assert_eq!(spec.data_source.unwrap().name, snap.metadata.name.unwrap());
    assert_eq!(spec.storage_class_name.as_deref(), Some("sim"));
    let rdir = PathBuf::from(
        &restored.metadata.annotations.unwrap()[coffer_tests::kube_sim::PATH_ANNOTATION],
    );
    assert_eq!(tree_digest(&rdir), original);

    // A task pod: the tool runs next to the claim, in an image the Blueprint grants; the
    // pod goes when the action ends.
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "tasks"},
                "spec": {"plugin": {"path": coffer_tests::test_plugin("hostile")},
                         "grants": {"images": ["busybox:*"], "exec": ["sh **"], "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "task", "image": "busybox:1.36", "pvc": "data"}}}})),
        )
        .await
        .unwrap();
    env.statefulset("tool", vec![], json!({"coffer.dev/blueprint": "tasks"}))
        .await;
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/tool"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    let out = &status["outputs"];
    let pod = out["pod"].as_str().unwrap();
    assert!(pod.starts_with("coffer-task-"), "{out}");
    assert_eq!(out["same"], "true", "one task pod per action");
    assert_eq!(
        out["out"].as_str().unwrap(),
        format!("{pod}\nchanged after the snapshot\n"),
        "the command ran in the task pod, next to the claim's data"
    );
    assert!(
        out["denied"]
            .as_str()
            .unwrap()
            .contains("evil:latest: not granted by Blueprint tasks"),
        "{out}"
    );
    let pods: Api<coffer_tests::k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), "db");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pods.get_opt(pod).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the task pod outlived its action"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
