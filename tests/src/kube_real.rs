//! A real Kubernetes control plane for the tests: kube-apiserver and kube-controller-manager
//! 1.37, etcd 3.7 and kwok (Nodes whose Pods turn Running, and whose exec runs the command
//! on this machine), started by scripts/kube.sh on free ports in a directory of their own.
//! The binaries are built from Go module source once per machine (about 15 minutes, cached
//! in ~/.cache/coffer-tools/kube); a start takes a few seconds.
//!
//! The API server enforces what the simulator cannot: RBAC for every request, CRD schemas,
//! admission, real controllers (a StatefulSet's pods come from the controller manager,
//! namespaces finalize, garbage collection). What it cannot do here stays on the simulator:
//! CSI snapshots (no snapshot controller) and pod volumes on this machine.
//!
//! kwok's exec gives a command kwok's own environment; a kubelet would give it the
//! container's. So a thread here plays that part of the kubelet: for every Pod on the kwok
//! node it writes a kwok `Exec` object with each container's `env` resolved (`value`,
//! `secretKeyRef`, `configMapKeyRef`, `fieldRef` to the pod's name and namespace).

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The node kwok runs; pods must name it (there is no scheduler) and tolerate nothing.
pub const NODE: &str = "kwok-node";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube.sh")
}

/// Build the control plane's binaries if this machine has not yet (once per process;
/// scripts/kube.sh locks against other processes).
pub fn ensure_built() {
    crate::ensure_packages();
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let status = Command::new(script())
            .arg("build")
            .status()
            .map_err(|e| format!("running scripts/kube.sh build: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/kube.sh build failed ({status}); its output above says why (it needs go, openssl and curl)"
            ))
        }
    });
    if let Err(e) = done {
        panic!("{e}");
    }
}

pub struct RealKube {
    pub dir: PathBuf,
    /// A cluster administrator (system:masters).
    pub kubeconfig: PathBuf,
    /// User `alice`: authenticated, in no group, allowed only what a test grants her.
    pub alice_kubeconfig: PathBuf,
    pub server: String,
    pub ca: PathBuf,
    stop: Arc<AtomicBool>,
    networks: Networks,
    kubelet: Option<std::thread::JoinHandle<()>>,
}

impl RealKube {
    pub fn start() -> RealKube {
        crate::ensure_packages();
        ensure_built();
        let dir = std::env::temp_dir().join(format!("coffer-kube-{}", crate::random_hex(6)));
        let apiserver = crate::free_port();
        let started = Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .env("KUBE_APISERVER_PORT", apiserver.to_string())
            .env("KUBE_ETCD_PORT", crate::free_port().to_string())
            .env("KUBE_ETCD_PEER_PORT", crate::free_port().to_string())
            .env("KUBE_KCM_PORT", crate::free_port().to_string())
            .env("KUBE_KWOK_PORT", crate::free_port().to_string())
            // Everything stops when this test process ends, however it ends.
            .env("KUBE_OWNER_PID", std::process::id().to_string())
            .output()
            .expect("running scripts/kube.sh start");
        assert!(
            out.status.success(),
            "starting the control plane in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "control plane on 127.0.0.1:{apiserver} ready in {:.1}s ({})",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let networks = Networks::default();
        let kubeconfig = dir.join("admin.kubeconfig");
        let kubelet = {
            let stop = stop.clone();
            let kubeconfig = kubeconfig.clone();
            let networks = networks.clone();
            std::thread::spawn(move || kubelet_env(&kubeconfig, &stop, &networks))
        };
        RealKube {
            alice_kubeconfig: dir.join("alice.kubeconfig"),
            kubeconfig,
            server: format!("https://127.0.0.1:{apiserver}"),
            ca: dir.join("pki/ca.crt"),
            dir,
            stop,
            networks,
            kubelet: Some(kubelet),
        }
    }

    /// What the network of namespace `ns` resolves names to, for the commands exec'd in its
    /// pods (from now on): these variables replace the containers' own. The stand-in for
    /// cluster DNS here, where every "pod" runs on this machine — e.g. `PGPORT` of the
    /// PostgreSQL that Service `pg` stands for in that namespace.
    pub fn network(&self, ns: &str, env: &[(&str, String)]) {
        self.networks.lock().unwrap().insert(
            ns.to_string(),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }

    /// A kubeconfig that authenticates with a bearer token.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: coffer\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: {name}\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: coffer\n  context: {{cluster: coffer, user: {name}}}\ncurrent-context: coffer\n",
                self.server,
                self.ca.display()
            ),
        )
        .unwrap();
        path
    }

    /// A fresh token of ServiceAccount `ns/name` (TokenRequest, two hours).
    pub async fn service_account_token(&self, ns: &str, name: &str) -> String {
        let client = self.client().await;
        let req = http::Request::post(format!(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"
        ))
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}}))
            .unwrap(),
        )
        .unwrap();
        let v: Value = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{name}: {e}"));
        v["status"]["token"].as_str().expect("a token").to_string()
    }

    /// A kubeconfig holding a fresh token of ServiceAccount `ns/name` (TokenRequest), so a
    /// process gets exactly that account's RBAC.
    pub async fn service_account_kubeconfig(&self, ns: &str, name: &str) -> PathBuf {
        let token = self.service_account_token(ns, name).await;
        self.token_kubeconfig(&format!("sa-{ns}-{name}"), &token)
    }

    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// Create or update every object of a multi-document YAML stream (server-side apply,
    /// field manager `coffer-tests`), in the order given.
    pub async fn apply(&self, yaml: &str) {
        apply(&self.client().await, yaml).await
    }

    /// Wait until pod `ns/name` is Running and Ready on the kwok node, with its containers'
    /// environment in place for exec.
    pub async fn pod_running(&self, ns: &str, name: &str) {
        let client = self.client().await;
        let pods: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod")),
        );
        let execs: Api<DynamicObject> = Api::namespaced_with(client, ns, &exec_resource());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pod = pods.get_opt(name).await.ok().flatten();
            let ready = pod.as_ref().is_some_and(|p| {
                p.data["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if ready && execs.get_opt(name).await.ok().flatten().is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pod {ns}/{name} not Running within 90s: {:#}\nkwok:\n{}\ncontroller manager:\n{}",
                pod.map(|p| p.data["status"].clone()).unwrap_or_default(),
                self.log("kwok"),
                self.log("kube-controller-manager")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The API server's audit records so far (one per request: `user.username`,
    /// `impersonatedUser`, `verb`, `requestURI`, `responseStatus.code`, ...).
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("logs/audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The requests of `user` the API server refused (403).
    pub fn refused(&self, user: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["user"]["username"] == user && r["responseStatus"]["code"] == 403)
            .collect()
    }

    /// The tail of a control plane component's log (kube-apiserver, kwok, ...).
    pub fn log(&self, component: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("logs/{component}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for RealKube {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.kubelet.take() {
            let _ = t.join();
        }
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn client_from(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn exec_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Exec"),
        "execs",
    )
}

/// The API of a kind, found by discovery (retried: a new CRD's kind is served a moment
/// after the CRD is created).
pub async fn api_for(
    client: &Client,
    gvk: &GroupVersionKind,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ar, caps) = loop {
        match kube::discovery::pinned_kind(client, gvk).await {
            Ok(found) => break found,
            Err(e) if Instant::now() > deadline => panic!("discovering {gvk:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    match (caps.scope, ns) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        (kube::discovery::Scope::Namespaced, None) => {
            Api::default_namespaced_with(client.clone(), &ar)
        }
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
    }
}

pub async fn apply(client: &Client, yaml: &str) {
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let tm = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&tm).unwrap();
        let name = obj.metadata.name.clone().expect("a name");
        let api = api_for(client, &gvk, obj.metadata.namespace.as_deref()).await;
        api.patch(
            &name,
            &PatchParams::apply("coffer-tests").force(),
            &Patch::Apply(&v),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", tm.kind));
    }
}

/// Wait until `what` holds, polling; panics with `describe()` after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The kubelet's share of exec here: each pod's containers' environment, written as the
/// kwok Exec object of the same name.
type Networks = Arc<std::sync::Mutex<HashMap<String, Vec<(String, String)>>>>;

/// The annotation the stand-in kubelet sets once a pod's Exec (its environment) is written;
/// kwok's pod-ready stage waits for it.
pub const ENV_WRITTEN: &str = "coffer-tests/env-written";

fn kubelet_env(kubeconfig: &Path, stop: &AtomicBool, networks: &Networks) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = client_from(kubeconfig).await;
        let pods: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod")),
        );
        let exec_ar = exec_resource();
        // Pod uid -> done.
        let mut written: HashMap<String, ()> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(list) = pods.list(&Default::default()).await {
                for pod in list.items {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if written.contains_key(&uid) || pod.data["spec"]["nodeName"] != NODE {
                        continue;
                    }
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let mut execs = Vec::new();
                    for c in pod.data["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let mut envs = Vec::new();
                        let network = networks.lock().unwrap().get(&ns).cloned();
                        let network = network.unwrap_or_default();
                        for e in c["env"].as_array().into_iter().flatten() {
                            if network.iter().any(|(k, _)| e["name"] == k.as_str()) {
                                continue;
                            }
                            if let Some(v) = resolve_env(&client, &ns, &name, e).await {
                                envs.push(json!({"name": e["name"], "value": v}));
                            }
                        }
                        for (k, v) in &network {
                            envs.push(json!({"name": k, "value": v}));
                        }
                        let mut local = json!({"envs": envs});
                        // The user the container runs as (a kubelet's runAsUser/runAsGroup).
                        let user = |k: &str| {
                            c["securityContext"][k]
                                .as_i64()
                                .or(pod.data["spec"]["securityContext"][k].as_i64())
                        };
                        // Only a user this machine has: an image's own users (Bitnami's
                        // 1001) do not exist here, and their commands run as before.
                        let known = |u: i64| {
                            u32::try_from(u).is_ok_and(|u| !unsafe { libc::getpwuid(u) }.is_null())
                        };
                        if let Some(u) = user("runAsUser").filter(|u| known(*u)) {
                            local["securityContext"] = json!({"runAsUser": u});
                            // Somewhere that user may be.
                            local["workDir"] = json!("/tmp");
                            if let Some(g) = user("runAsGroup") {
                                local["securityContext"]["runAsGroup"] = json!(g);
                            }
                        }
                        execs.push(json!({"containers": [c["name"]], "local": local}));
                    }
                    let exec = json!({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Exec",
                        "metadata": {"name": name, "namespace": ns,
                                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                                         "name": name, "uid": uid}]},
                        "spec": {"execs": execs}});
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &ns, &exec_ar);
                    if api
                        .patch(
                            &name,
                            &PatchParams::apply("coffer-tests-kubelet").force(),
                            &Patch::Apply(&exec),
                        )
                        .await
                        .is_ok()
                        // Only now may kwok make it Ready (scripts/kube/kwok.yaml, pod-ready):
                        // a real container runs with its environment from the start, so an
                        // exec must never reach a pod before its Exec is written.
                        && Api::<DynamicObject>::namespaced_with(
                            client.clone(),
                            &ns,
                            &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod")),
                        )
                        .patch(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"metadata": {"annotations": {ENV_WRITTEN: "true"}}})),
                            )
                            .await
                            .is_ok()
                    {
                        written.insert(uid, ());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

async fn resolve_env(client: &Client, ns: &str, pod: &str, e: &Value) -> Option<String> {
    if let Some(v) = e["value"].as_str() {
        return Some(v.to_string());
    }
    let from = &e["valueFrom"];
    let (kind, r) = if let Some(r) = from.get("secretKeyRef") {
        ("Secret", r)
    } else if let Some(r) = from.get("configMapKeyRef") {
        ("ConfigMap", r)
    } else {
        return match from["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => Some(pod.to_string()),
            Some("metadata.namespace") => Some(ns.to_string()),
            _ => None,
        };
    };
    let (name, key) = (r["name"].as_str()?, r["key"].as_str()?);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind)),
    );
    let obj = api.get(name).await.ok()?;
    if kind == "Secret" {
        use base64::Engine;
        let b64 = obj.data["data"][key].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    } else {
        obj.data["data"][key].as_str().map(String::from)
    }
}
