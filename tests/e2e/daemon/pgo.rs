//! A Crunchy PGO PostgresCluster on a real control plane: the daemon asks "PGO" (the
//! stand-in controller of tests/src/pgo.rs, which runs REAL pgBackRest against a real
//! PostgreSQL archiving its WAL) for a manual backup and an in-place restore through the
//! cluster's annotations and spec, and reads pgBackRest's `info` by exec in the repo host
//! pod (kwok runs it here, as the pod's user).

use crate::env::*;
use coffer_tests::pgbackrest::{Repo, postgres_ids};
use coffer_tests::pgo::{self, FakePgo};
use std::sync::{Arc, Mutex};

const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x";

/// What the Blueprint's kube grants need, for its ServiceAccount in namespace db.
const PLUGIN_ROLE: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: coffer-plugin-pgo, namespace: db}
rules:
  - apiGroups: [postgres-operator.crunchydata.com]
    resources: [postgresclusters]
    verbs: [get, patch]
  - apiGroups: [batch]
    resources: [jobs]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: coffer-plugin-pgo, namespace: db}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: coffer-plugin-pgo}
subjects: [{kind: ServiceAccount, name: coffer-plugin, namespace: db}]
"#;

/// A merge patch of the cluster (annotations, spec), as a user or PGO's CLI makes it.
async fn annotate(clusters: &Api<DynamicObject>, patch: Value) {
    clusters
        .patch("hippo", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pgo_backs_up_and_restores_its_own_set_and_never_leaves_a_restore_enabled() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    kube.apply(pgo::CRD).await;
    kube.apply(PLUGIN_ROLE).await;

    let mut server = Postgres::start(None).unwrap();
    let repo = Repo::for_server(&mut server);
    repo.pgbackrest(&["stanza-create"]);
    server
        .psql(
            "postgres",
            "CREATE TABLE orders (id int PRIMARY KEY, item text);
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
        )
        .unwrap();
    let original = server.psql("postgres", CHECK).unwrap();
    let pg = Arc::new(Mutex::new(server));

    // The cluster, with a stale status a careless wait would take for this backup's.
    let clusters = pgo::clusters(&env.client, "db");
    clusters
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "postgres-operator.crunchydata.com/v1beta1",
                "kind": "PostgresCluster",
                "metadata": {"name": "hippo", "annotations": {"coffer.dev/blueprint": "pgbackrest"}},
                "spec": {"postgresVersion": 15, "backups": {"pgbackrest": {
                    "repos": [{"name": "repo1"}],
                    "manual": {"repoName": "repo1", "options": ["--type=full"]}}}}})),
        )
        .await
        .unwrap();
    clusters
        .patch_status(
            "hippo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"pgbackrest": {"manualBackup":
                {"id": "old", "finished": true, "succeeded": 1}}}})),
        )
        .await
        .unwrap();
    // The repo host, as PGO labels it; its pgBackRest runs as postgres.
    let (uid, gid) = postgres_ids();
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hippo-repo-host-0
  namespace: db
  labels: {{postgres-operator.crunchydata.com/cluster: hippo, postgres-operator.crunchydata.com/pgbackrest-dedicated: ""}}
spec:
  nodeName: {node}
  securityContext: {{runAsUser: {uid}, runAsGroup: {gid}}}
  containers:
    - name: pgbackrest
      image: registry.developers.crunchydata.com/crunchydata/crunchy-pgbackrest
      env:
        - {{name: PGBACKREST_CONFIG, value: "{conf}"}}
        - {{name: PGBACKREST_STANZA, value: main}}
"#,
        node = coffer_tests::kube_real::NODE,
        conf = repo.conf.display()
    ))
    .await;
    kube.pod_running("db", "hippo-repo-host-0").await;

    let _daemon = env.daemon("coffer-pgo", coffer_tests::free_port());
    let before = repo.labels();
    // PGO is not running yet: the stale `old` status must not end the wait.
    let backup = env
        .action_set(json!({"action": "backup", "workload": "postgrescluster/hippo"}))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let set = env.get("ActionSet", &backup).await.unwrap();
    assert_ne!(
        set.data["status"]["phase"], "Completed",
        "the backup completed on another backup's status"
    );
    let _pgo = FakePgo::start(&kube.kubeconfig, "db", "hippo", pg.clone(), &repo);
    let status = env.finished(&backup).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    let after = repo.labels();
    assert_eq!(after.len(), before.len() + 1, "{before:?} {after:?}");
    let label = after.last().unwrap().clone();
    assert_eq!(status["outputs"]["label"], label.as_str(), "{status:#}");
    assert!(
        label.ends_with('F'),
        "PGO's manual options said full: {label}"
    );
    let c = clusters.get("hippo").await.unwrap();
    let id = c.data["status"]["pgbackrest"]["manualBackup"]["id"]
        .as_str()
        .unwrap();
    assert!(id.starts_with("coffer-backup-"), "{id}");
    let rp = status["restorePoint"].as_str().unwrap().to_string();

    pg.lock()
        .unwrap()
        .psql("postgres", "DROP TABLE orders")
        .unwrap();
    env.completed(
        json!({"action": "restore", "workload": "postgrescluster/hippo",
                           "restorePoint": rp}),
    )
    .await;
    assert_eq!(
        pg.lock().unwrap().psql("postgres", CHECK).unwrap(),
        original
    );
    let c = clusters.get("hippo").await.unwrap();
    let r = &c.data["spec"]["backups"]["pgbackrest"]["restore"];
    assert_eq!(r["enabled"], false, "{r:#}");
    assert_eq!(
        r["options"],
        json!([format!("--set={label}"), "--type=immediate"])
    );

    // Point in time, on the timeline the restore began: the commit before the target is
    // there, the one after it is not.
    let target = {
        let pg = pg.lock().unwrap();
        pg.psql("postgres", "INSERT INTO orders VALUES (7001, 'before')")
            .unwrap();
        let t = pg
            .psql(
                "postgres",
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        pg.psql("postgres", "INSERT INTO orders VALUES (7002, 'after')")
            .unwrap();
        t
    };
    // Both commits archived (check switches the WAL file and waits for it).
    repo.pgbackrest(&["check"]);
    env.completed(
        json!({"action": "restore", "workload": "postgrescluster/hippo",
                       "restorePoint": rp, "params": {"target": {"time": target}}}),
    )
    .await;
    assert_eq!(
        pg.lock()
            .unwrap()
            .psql(
                "postgres",
                "SELECT string_agg(item, ',' ORDER BY id) FROM orders WHERE id > 5000"
            )
            .unwrap(),
        "before"
    );
    // PGO puts the options into a shell command: the target is always one quoted word.
    let c = clusters.get("hippo").await.unwrap();
    let options = &c.data["spec"]["backups"]["pgbackrest"]["restore"]["options"];
    let last = options[2].as_str().unwrap();
    assert_eq!(options[1], "--type=time", "{options}");
    assert!(
        last.starts_with("--target=\"") && last.ends_with('"'),
        "{options}"
    );

    // A failing backup Job: Failed, naming the Job.
    annotate(
        &clusters,
        json!({"metadata": {"annotations": {pgo::FAIL_BACKUP: "true"}}}),
    )
    .await;
    env.expect_failure(
        json!({"action": "backup", "workload": "postgrescluster/hippo"}),
        "job/hippo-backup-0002",
    )
    .await;

    // A failing restore: Failed with what to do, restore switched off, the data as it was.
    pg.lock()
        .unwrap()
        .psql("postgres", "INSERT INTO orders VALUES (5000, 'after')")
        .unwrap();
    let now = pg.lock().unwrap().psql("postgres", CHECK).unwrap();
    annotate(
        &clusters,
        json!({"metadata": {"annotations": {pgo::FAIL_RESTORE: "true"}}}),
    )
    .await;
    env.expect_failure(
        json!({"action": "restore", "workload": "postgrescluster/hippo", "restorePoint": rp}),
        "would stay stuck",
    )
    .await;
    let c = clusters.get("hippo").await.unwrap();
    assert_eq!(
        c.data["spec"]["backups"]["pgbackrest"]["restore"]["enabled"],
        false
    );
    assert_eq!(pg.lock().unwrap().psql("postgres", CHECK).unwrap(), now);

    // A run that died mid-restore left it enabled (and PGO stuck on it): the next backup
    // switches it off before asking PGO for anything.
    annotate(
        &clusters,
        json!({
                "metadata": {"annotations": {pgo::FAIL_BACKUP: null,
                    "postgres-operator.crunchydata.com/pgbackrest-restore": "coffer-restore-dead"}},
                "spec": {"backups": {"pgbackrest": {"restore": {"enabled": true}}}}}),
    )
    .await;
    coffer_tests::kube_real::eventually(30, "PGO fails the dead run's restore", || async {
        let c = clusters.get("hippo").await.unwrap();
        c.data["status"]["pgbackrest"]["restore"]["failed"] == 1
            && c.data["status"]["pgbackrest"]["restore"]["id"] == "coffer-restore-dead"
    })
    .await;
    env.completed(json!({"action": "backup", "workload": "postgrescluster/hippo"}))
        .await;
    let c = clusters.get("hippo").await.unwrap();
    assert_eq!(
        c.data["spec"]["backups"]["pgbackrest"]["restore"]["enabled"],
        false
    );

    // Delete: the restore point goes, the set stays for PGO's retention.
    env.completed(
        json!({"action": "delete", "workload": "postgrescluster/hippo",
                           "restorePoint": rp}),
    )
    .await;
    assert!(repo.labels().contains(&label), "the set was expired");
    assert!(env.get("RestorePoint", &rp).await.is_none());
    env.assert_daemon_rbac();
}
