//! A stand-in for the k8ssandra operator's Medusa controllers: it reacts to MedusaBackupJob,
//! MedusaRestoreJob and MedusaTask objects the way k8ssandra-operator 1.x does, by calling
//! the REAL Medusa gRPC server of a real Cassandra node ([`MedusaGrpc`], Medusa's own
//! `medusa.service.grpc.server`), and restores with Medusa's own restore entry point (what
//! the operator's `medusa-restore` init container runs). The datacenter has one pod, the
//! shared node. The CRDs are tests/src/medusa_crds.yaml ([`CRDS`]).
//!
//! - MedusaBackupJob: status `{startTime, inProgress: [pod]}`; `AsyncBackup`, then
//!   `BackupStatus` until SUCCESS or FAILED; a pod whose Medusa cannot be reached or whose
//!   backup failed goes to `failed`; for a backup with no failed pod, a MedusaBackup of the
//!   same name from `GetBackup`; then `finishTime` and `finished`.
//! - MedusaRestoreJob: `restoreKey`; `PrepareRestore`; the datacenter stopped
//!   (`datacenterStopped`); Medusa's restore (`python -m medusa.service.grpc.restore`,
//!   which puts the data in place and starts the node); the node started again if it is
//!   down (cass-operator restarts a pod whose start failed); `finished` or `failed`,
//!   `finishTime`.
//! - MedusaTask: `purge` (`PurgeBackups`, per-pod counts in `finished`) and `sync` (a
//!   MedusaBackup for every backup `GetBackups` lists that has none).
//!
//! The known status bugs, injected by annotations on the CassandraDatacenter:
//! [`EPOCH_FINISH`] (k8ssandra-operator#1301: `finishTime` is the epoch while a backup
//! runs), [`BACKUP_FOR_FAILED`] (#1383: a MedusaBackup made for a failed backup),
//! [`IN_PROGRESS`] (cassandra-medusa#965: the MedusaBackup says IN_PROGRESS with every
//! node finished), [`NEVER_FINISH`] (#1380: a backup job that never finishes),
//! [`RESTORE_MESSAGE`] (a restore the operator refuses, with its `message`).

use crate::cassandra::Cassandra;
use crate::kube_real::client_from;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CRDS: &str = include_str!("medusa_crds.yaml");
pub const GROUP: &str = "medusa.k8ssandra.io";
pub const EPOCH_FINISH: &str = "fake-medusa.coffer.dev/epoch-finish-time";
pub const BACKUP_FOR_FAILED: &str = "fake-medusa.coffer.dev/backup-for-failed";
pub const IN_PROGRESS: &str = "fake-medusa.coffer.dev/status-in-progress";
pub const NEVER_FINISH: &str = "fake-medusa.coffer.dev/never-finish";
pub const RESTORE_MESSAGE: &str = "fake-medusa.coffer.dev/restore-message";
const SCRIPT: &str = include_str!("medusa_grpc.py");

pub fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1alpha1", kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

pub fn datacenters(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cassandra.datastax.com",
        "v1beta1",
        "CassandraDatacenter",
    ));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn python() -> PathBuf {
    Cassandra::medusa_path().join("python")
}

/// Medusa's gRPC server for the node (what runs in each Cassandra pod's `medusa`
/// container), on 127.0.0.1; stopped when dropped.
pub struct MedusaGrpc {
    pub port: u16,
    dir: tempfile::TempDir,
    ini: PathBuf,
    child: Mutex<Option<Child>>,
}

impl MedusaGrpc {
    pub fn start(node: &Cassandra) -> MedusaGrpc {
        let dir = tempfile::Builder::new()
            .prefix("coffer-medusa-grpc-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = crate::free_port();
        let ini = std::fs::read_to_string(node.medusa_ini()).unwrap().replace(
            "[grpc]\nenabled = False",
            &format!("[grpc]\nenabled = True\nport = {port}"),
        );
        assert!(ini.contains(&format!("port = {port}")), "{ini}");
        let ini_path = dir.path().join("medusa.ini");
        std::fs::write(&ini_path, ini).unwrap();
        std::fs::write(dir.path().join("medusa_grpc.py"), SCRIPT).unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        let g = MedusaGrpc {
            port,
            dir,
            ini: ini_path,
            child: Mutex::new(None),
        };
        g.start_again();
        g
    }

    /// Start the server (again) and wait until it answers.
    pub fn start_again(&self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(python())
            .arg(self.dir.path().join("medusa_grpc.py"))
            .arg("serve")
            .arg(&self.ini)
            .arg(self.dir.path().join("mappings"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting Medusa's gRPC server");
        *self.child.lock().unwrap() = Some(child);
        for _ in 0..240 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "Medusa's gRPC server did not listen in 60 s:\n{}",
            self.log()
        );
    }

    /// Stop it (a `medusa` container that is down).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// One RPC with `request`: its response, or `Err("CODE details")`.
    pub fn call(&self, rpc: &str, request: Value) -> Result<Value, String> {
        let out = Command::new(python())
            .arg(self.dir.path().join("medusa_grpc.py"))
            .args(["call", &format!("127.0.0.1:{}", self.port), rpc])
            .arg(request.to_string())
            .output()
            .expect("running the gRPC client");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "the gRPC client printed no JSON ({e}): {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        match v.get("error") {
            Some(code) => Err(format!("{} {}", code.as_str().unwrap_or(""), v["details"])),
            None => Ok(v),
        }
    }

    /// Medusa's restore for `backup`, as the operator's init container runs it.
    fn restore(&self, backup: &str, key: &str) -> Result<(), String> {
        let mapping = std::fs::read_to_string(self.dir.path().join("mappings").join(key))
            .unwrap_or_else(|_| r#"{"in_place": true, "host_map": {}}"#.into());
        let tmp = self.dir.path().join("restore-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let out = Command::new(python())
            .args(["-m", "medusa.service.grpc.restore"])
            .arg(&self.ini)
            .arg(key)
            .env("BACKUP_NAME", backup)
            .env("RESTORE_MAPPING", mapping)
            .env("MEDUSA_TMP_DIR", &tmp)
            .current_dir(self.dir.path())
            .output()
            .expect("running Medusa's restore");
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
        }
    }
}

impl Drop for MedusaGrpc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running stand-in operator for one datacenter; stopped when dropped.
pub struct FakeOperator {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeOperator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the operator works with.
struct Dc {
    ns: String,
    name: String,
    pod: String,
    node: &'static Cassandra,
    grpc: Arc<MedusaGrpc>,
}

impl FakeOperator {
    /// Reconcile the Medusa objects of datacenter `ns/dc` (pod `pod`, node `node`).
    pub fn start(
        kubeconfig: &Path,
        ns: &str,
        dc: &str,
        pod: &str,
        node: &'static Cassandra,
        grpc: Arc<MedusaGrpc>,
    ) -> FakeOperator {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let kubeconfig = kubeconfig.to_path_buf();
        let dc = Dc {
            ns: ns.into(),
            name: dc.into(),
            pod: pod.into(),
            node,
            grpc,
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(kubeconfig, dc, flag));
        });
        FakeOperator {
            stop,
            thread: Some(thread),
        }
    }
}

fn now() -> String {
    rfc3339(time::OffsetDateTime::now_utc().unix_timestamp())
}

fn rfc3339(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .replace_nanosecond(0)
        .unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// An int64 of a protobuf JSON (a string) or a number.
fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

async fn set_status(api: &Api<DynamicObject>, name: &str, status: Value) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("patching the status of {name}: {e}"));
}

/// Blocking work off the runtime's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn run(kubeconfig: PathBuf, dc: Dc, stop: Arc<AtomicBool>) {
    let client = client_from(&kubeconfig).await;
    let dc = Arc::new(dc);
    let (jobs, backups, restores, tasks) = (
        api(&client, &dc.ns, "MedusaBackupJob"),
        api(&client, &dc.ns, "MedusaBackup"),
        api(&client, &dc.ns, "MedusaRestoreJob"),
        api(&client, &dc.ns, "MedusaTask"),
    );
    let dcs = datacenters(&client, &dc.ns);
    // What this operator already took up (a job left unfinished stays so).
    let mut taken: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(cassdc) = dcs.get(&dc.name).await else {
            continue;
        };
        let injected = cassdc.metadata.annotations.clone().unwrap_or_default();
        let flag = |k: &str| injected.get(k).is_some_and(|v| v == "true");
        let fresh = |taken: &HashSet<String>, o: &DynamicObject, kind: &str| {
            o.data["spec"]["cassandraDatacenter"] == dc.name.as_str()
                && !taken.contains(&format!("{kind}/{}", o.metadata.name.as_deref().unwrap()))
        };
        if let Ok(list) = jobs.list(&Default::default()).await
            && let Some(job) = list.items.iter().find(|j| fresh(&taken, j, "job"))
        {
            let name = job.metadata.name.clone().unwrap();
            taken.insert(format!("job/{name}"));
            let mode = job.data["spec"]["backupType"]
                .as_str()
                .unwrap_or("differential")
                .to_string();
            backup(
                &dc,
                &jobs,
                &backups,
                &name,
                &mode,
                (
                    flag(EPOCH_FINISH),
                    flag(BACKUP_FOR_FAILED),
                    flag(IN_PROGRESS),
                    flag(NEVER_FINISH),
                ),
            )
            .await;
            continue;
        }
        if let Ok(list) = restores.list(&Default::default()).await
            && let Some(job) = list.items.iter().find(|j| fresh(&taken, j, "restore"))
        {
            let name = job.metadata.name.clone().unwrap();
            taken.insert(format!("restore/{name}"));
            let b = job.data["spec"]["backup"].as_str().unwrap().to_string();
            restore(&dc, &restores, &name, &b, injected.get(RESTORE_MESSAGE)).await;
            continue;
        }
        if let Ok(list) = tasks.list(&Default::default()).await
            && let Some(t) = list.items.iter().find(|j| fresh(&taken, j, "task"))
        {
            let name = t.metadata.name.clone().unwrap();
            taken.insert(format!("task/{name}"));
            let op = t.data["spec"]["operation"].as_str().unwrap().to_string();
            task(&dc, &tasks, &backups, &name, &op).await;
        }
    }
}

async fn backup(
    dc: &Arc<Dc>,
    jobs: &Api<DynamicObject>,
    backups: &Api<DynamicObject>,
    name: &str,
    mode: &str,
    (epoch, for_failed, in_progress, never): (bool, bool, bool, bool),
) {
    let mut status = json!({"startTime": now(), "inProgress": [dc.pod]});
    if epoch {
        status["finishTime"] = json!("1970-01-01T00:00:00Z");
    }
    set_status(jobs, name, status).await;
    let (d, n, m) = (dc.clone(), name.to_string(), mode.to_uppercase());
    let made = blocking(move || {
        d.grpc.call("AsyncBackup", json!({"name": n, "mode": m}))?;
        for _ in 0..1200 {
            match d.grpc.call("BackupStatus", json!({"backupName": n})) {
                Ok(s) if s["status"] == "SUCCESS" => {
                    return d.grpc.call("GetBackup", json!({"backupName": n}));
                }
                Ok(s) if s["status"] == "FAILED" => return Err(format!("backup {n} FAILED")),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        Err(format!("backup {n} did not finish in 10 minutes"))
    })
    .await;
    if let Err(e) = &made {
        eprintln!("fake operator: backup {name} failed: {e}");
    }
    if never {
        return;
    }
    if made.is_ok() || for_failed {
        let summary = made
            .as_ref()
            .map(|g| g["backup"].clone())
            .unwrap_or_default();
        let nodes: Vec<Value> = summary["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                json!({"host": n["host"], "datacenter": n["datacenter"], "rack": n["rack"],
                       "tokens": n["tokens"].as_array().into_iter().flatten().map(int).collect::<Vec<_>>()})
            })
            .collect();
        let total = int(&summary["totalNodes"]).max(1);
        let finished = int(&summary["finishedNodes"]);
        let state = match (made.is_ok(), in_progress) {
            (true, false) => "SUCCESS",
            (true, true) => "IN_PROGRESS",
            (false, _) => "",
        };
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/v1alpha1"), "kind": "MedusaBackup",
            "metadata": {"name": name},
            "spec": {"cassandraDatacenter": dc.name, "backupType": mode},
        }))
        .unwrap();
        backups
            .create(&Default::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating MedusaBackup {name}: {e}"));
        let mut s = json!({
            "totalNodes": total, "finishedNodes": finished, "nodes": nodes,
            "totalFiles": int(&summary["totalObjects"]),
            "totalSize": format!("{} B", int(&summary["totalSize"])),
            "status": state,
        });
        if made.is_ok() {
            s["startTime"] = json!(rfc3339(int(&summary["startTime"])));
            s["finishTime"] = json!(rfc3339(int(&summary["finishTime"])));
        }
        set_status(backups, name, s).await;
    }
    let s = match &made {
        Ok(_) => json!({"finishTime": now(), "inProgress": [], "finished": [dc.pod]}),
        Err(_) => json!({"finishTime": now(), "inProgress": [], "failed": [dc.pod]}),
    };
    set_status(jobs, name, s).await;
}

async fn restore(
    dc: &Arc<Dc>,
    restores: &Api<DynamicObject>,
    name: &str,
    backup: &str,
    message: Option<&String>,
) {
    let key = format!(
        "{:x}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    set_status(
        restores,
        name,
        json!({"restoreKey": key, "startTime": now()}),
    )
    .await;
    if let Some(m) = message {
        set_status(restores, name, json!({"message": m, "finishTime": now()})).await;
        return;
    }
    let (d, b, k) = (dc.clone(), backup.to_string(), key.clone());
    let prepared = blocking(move || {
        d.grpc.call(
            "PrepareRestore",
            json!({"backupName": b, "datacenter": d.name, "restoreKey": k}),
        )
    })
    .await;
    if let Err(e) = prepared {
        set_status(
            restores,
            name,
            json!({"message": format!("preparing the restore failed: {e}"), "finishTime": now()}),
        )
        .await;
        return;
    }
    set_status(restores, name, json!({"restorePrepared": true})).await;
    let d = dc.clone();
    blocking(move || d.node.stop()).await;
    set_status(
        restores,
        name,
        json!({"datacenterStopped": now(), "inProgress": [dc.pod]}),
    )
    .await;
    let (d, b) = (dc.clone(), backup.to_string());
    let restored = blocking(move || {
        let r = d.grpc.restore(&b, &key);
        // The operator starts the datacenter again, and cass-operator restarts a pod whose
        // start failed, whatever the restore came to.
        d.node.restart_if_down();
        r
    })
    .await;
    let s = match restored {
        Ok(()) => json!({"finishTime": now(), "inProgress": [], "finished": [dc.pod]}),
        Err(e) => {
            eprintln!("fake operator: restore {name} failed: {e}");
            json!({"finishTime": now(), "inProgress": [], "failed": [dc.pod]})
        }
    };
    set_status(restores, name, s).await;
}

async fn task(
    dc: &Arc<Dc>,
    tasks: &Api<DynamicObject>,
    backups: &Api<DynamicObject>,
    name: &str,
    op: &str,
) {
    set_status(
        tasks,
        name,
        json!({"startTime": now(), "inProgress": [dc.pod]}),
    )
    .await;
    let d = dc.clone();
    let s = match op {
        "purge" => match blocking(move || d.grpc.call("PurgeBackups", json!({}))).await {
            Ok(p) => json!({"finished": [{"podName": dc.pod,
                "nbBackupsPurged": int(&p["nbBackupsPurged"]),
                "nbObjectsPurged": int(&p["nbObjectsPurged"]),
                "totalPurgedSize": int(&p["totalPurgedSize"]),
                "totalObjectsWithinGcGrace": int(&p["totalObjectsWithinGcGrace"])}]}),
            Err(_) => json!({"failed": [dc.pod]}),
        },
        "sync" => match blocking(move || d.grpc.call("GetBackups", json!({}))).await {
            Ok(all) => {
                for b in all["backups"].as_array().into_iter().flatten() {
                    let n = b["backupName"].as_str().unwrap_or_default();
                    if backups.get_opt(n).await.ok().flatten().is_some() {
                        continue;
                    }
                    let obj: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": format!("{GROUP}/v1alpha1"), "kind": "MedusaBackup",
                        "metadata": {"name": n},
                        "spec": {"cassandraDatacenter": dc.name,
                                 "backupType": b["backupType"].as_str().unwrap_or("differential")},
                    }))
                    .unwrap();
                    if backups.create(&Default::default(), &obj).await.is_ok() {
                        set_status(
                            backups,
                            n,
                            json!({"totalNodes": int(&b["totalNodes"]),
                                   "finishedNodes": int(&b["finishedNodes"]),
                                   "totalFiles": int(&b["totalObjects"]),
                                   "startTime": rfc3339(int(&b["startTime"])),
                                   "finishTime": rfc3339(int(&b["finishTime"])),
                                   "status": b["status"]}),
                        )
                        .await;
                    }
                }
                json!({"finished": [{"podName": dc.pod}]})
            }
            Err(_) => json!({"failed": [dc.pod]}),
        },
        _ => json!({"failed": [dc.pod]}),
    };
    let mut s = s;
    s["finishTime"] = json!(now());
    s["inProgress"] = json!([]);
    set_status(tasks, name, s).await;
}
