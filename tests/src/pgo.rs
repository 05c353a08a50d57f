//! A stand-in for Crunchy PGO's pgBackRest controller: it reacts to a PostgresCluster's
//! annotations the way PGO does, by running REAL pgBackRest against a real local PostgreSQL
//! that archives its WAL (see [`crate::pgbackrest::Repo`]).
//!
//! - `…/pgbackrest-backup=<id>` with `spec.backups.pgbackrest.manual` set and
//!   `status.pgbackrest.manualBackup.id` another id: a Job (suspended: no pods here) labelled
//!   as PGO labels its backup Jobs, status `manualBackup {id, finished: false, active: 1}`,
//!   `pgbackrest backup` with the manual options, then `{id, finished: true, succeeded: 1}`
//!   (or `failed: 1`).
//! - `…/pgbackrest-restore=<id>` with `spec.backups.pgbackrest.restore.enabled: true` and
//!   `status.pgbackrest.restore.id` another id: the server stopped, `pgbackrest restore
//!   --delta` with the restore options (and `--target-action=promote` as PGO adds), the
//!   server started and promoted, `restore {id, finished: true, succeeded: 1}`.
//!
//! Failure injection by annotation: `fake-pgo.coffer.dev/fail-backup: "true"` makes the
//! backup Job fail; `fake-pgo.coffer.dev/fail-restore: "true"` makes the restore Job fail
//! the way PGO leaves it: `failed: 1`, never finished (the server is started again
//! untouched, so the test can see nothing was lost).

use crate::kube_real::client_from;
use crate::pgbackrest::Repo;
use crate::postgres::Postgres;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const GROUP: &str = "postgres-operator.crunchydata.com";
pub const FAIL_BACKUP: &str = "fake-pgo.coffer.dev/fail-backup";
pub const FAIL_RESTORE: &str = "fake-pgo.coffer.dev/fail-restore";
const BACKUP: &str = "postgres-operator.crunchydata.com/pgbackrest-backup";
const RESTORE: &str = "postgres-operator.crunchydata.com/pgbackrest-restore";

/// The PostgresCluster CRD, as far as these tests need it: any spec, a status subresource.
pub const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: postgresclusters.postgres-operator.crunchydata.com
spec:
  group: postgres-operator.crunchydata.com
  scope: Namespaced
  names: {kind: PostgresCluster, listKind: PostgresClusterList, plural: postgresclusters, singular: postgrescluster}
  versions:
    - name: v1beta1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

pub fn clusters(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1beta1", "PostgresCluster"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// A running fake operator for one cluster; stopped when dropped.
pub struct FakePgo {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakePgo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `a "b c" d` → [a, b c, d]: how a shell splits PGO's joined options.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn pgbackrest(conf: &Path, args: &[String]) -> Result<(), String> {
    let out = crate::pgbackrest::run(conf, args).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A PGO `options` list as the arguments its shell command gets.
fn options(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .flat_map(shell_words)
        .collect()
}

impl FakePgo {
    /// Watch PostgresCluster `ns/name`, backing up and restoring `pg` with `repo`'s pgBackRest.
    pub fn start(
        kubeconfig: &Path,
        ns: &str,
        name: &str,
        pg: Arc<Mutex<Postgres>>,
        repo: &Repo,
    ) -> FakePgo {
        let stop = Arc::new(AtomicBool::new(false));
        let (kubeconfig, ns, name) = (kubeconfig.to_path_buf(), ns.to_string(), name.to_string());
        let conf = repo.conf.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(kubeconfig, ns, name, pg, conf, flag));
        });
        FakePgo {
            stop,
            thread: Some(thread),
        }
    }
}

async fn set_status(api: &Api<DynamicObject>, name: &str, which: &str, s: Value) {
    let patch = json!({"status": {"pgbackrest": {which: s}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching the PostgresCluster's status");
}

async fn run(
    kubeconfig: PathBuf,
    ns: String,
    name: String,
    pg: Arc<Mutex<Postgres>>,
    conf: PathBuf,
    stop: Arc<AtomicBool>,
) {
    let client = client_from(&kubeconfig).await;
    let api = clusters(&client, &ns);
    let jobs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("batch", "v1", "Job")),
    );
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(c) = api.get(&name).await else {
            continue;
        };
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        let flag = |k: &str| annotations.get(k).is_some_and(|v| v == "true");
        let status = |which: &str| {
            c.data["status"]["pgbackrest"][which]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let manual = &c.data["spec"]["backups"]["pgbackrest"]["manual"];
        if let Some(id) = annotations.get(BACKUP)
            && *id != status("manualBackup")
            && manual.is_object()
        {
            n += 1;
            set_status(&api, &name, "manualBackup", json!({"id": id, "finished": false, "active": 1, "succeeded": null, "failed": null})).await;
            let job = format!("{name}-backup-{n:04}");
            let labels = json!({"postgres-operator.crunchydata.com/cluster": name,
                                "postgres-operator.crunchydata.com/pgbackrest-backup": "manual"});
            jobs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": job, "labels": labels},
                    "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "pgbackrest", "image": "pgbackrest"}]}}}}))
                .unwrap(),
            )
            .await
            .expect("creating the backup Job");
            let options = options(&manual["options"]);
            let ok = !flag(FAIL_BACKUP) && {
                let mut args = options;
                args.push("backup".into());
                let conf = conf.clone();
                tokio::task::spawn_blocking(move || pgbackrest(&conf, &args))
                    .await
                    .unwrap()
                    .is_ok()
            };
            let s = if ok {
                json!({"id": id, "finished": true, "active": 0, "succeeded": 1})
            } else {
                json!({"id": id, "finished": true, "active": 0, "failed": 1})
            };
            set_status(&api, &name, "manualBackup", s).await;
            continue;
        }
        let restore = &c.data["spec"]["backups"]["pgbackrest"]["restore"];
        if let Some(id) = annotations.get(RESTORE)
            && restore["enabled"] == json!(true)
            && *id != status("restore")
        {
            set_status(
                &api,
                &name,
                "restore",
                json!({"id": id, "finished": false, "active": 1}),
            )
            .await;
            let mut args = options(&restore["options"]);
            let fail = flag(FAIL_RESTORE);
            let pg = pg.clone();
            let conf = conf.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut pg = pg.lock().unwrap();
                pg.stop();
                let result = if fail {
                    Err("injected".to_string())
                } else {
                    args.push("--delta".into());
                    args.push(format!("--pg1-path={}", pg.data_dir().display()));
                    args.push("--target-action=promote".into());
                    args.push("restore".into());
                    pgbackrest(&conf, &args)
                };
                pg.start_again()
                    .expect("starting PostgreSQL after the restore");
                if result.is_ok() {
                    pg.wait_promoted().expect("the restored server promotes");
                }
                result
            })
            .await
            .unwrap();
            let s = match done {
                Ok(()) => json!({"id": id, "finished": true, "active": 0, "succeeded": 1}),
                // PGO keeps a failed restore Job, and the restore never finishes.
                Err(_) => json!({"id": id, "finished": false, "active": 0, "failed": 1}),
            };
            set_status(&api, &name, "restore", s).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn options_split_like_a_shell() {
        assert_eq!(
            super::shell_words(r#"--type=time --target="2026-12-04 10:00:00+00"  --set=x"#),
            ["--type=time", "--target=2026-12-04 10:00:00+00", "--set=x"]
        );
    }
}
