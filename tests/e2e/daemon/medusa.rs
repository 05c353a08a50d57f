//! A K8ssandra datacenter on a real control plane: the daemon backs up and restores it
//! through the k8ssandra operator's Medusa API (MedusaBackupJob, MedusaBackup,
//! MedusaRestoreJob, MedusaTask), played by the stand-in operator of
//! tests/src/medusa_operator.rs, which calls the REAL Medusa gRPC server of a real Cassandra
//! 5.0.9 node and restores with Medusa's own restore. Each status bug users hit is injected
//! once. The node is shared by the process, so all of it is one test.

use crate::env::*;
use coffer_tests::cassandra::Cassandra;
use coffer_tests::medusa_operator::{self as op, FakeOperator, MedusaGrpc};
use std::sync::Arc;

const TABLE: &str = "k8s.orders";
const POD: &str = "demo-dc1-default-sts-0";

/// What the Blueprint's kube grants need, for its ServiceAccount in namespace db (apply is
/// create and patch).
const PLUGIN_ROLE: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: coffer-plugin-medusa, namespace: db}
rules:
  - apiGroups: [medusa.k8ssandra.io]
    resources: [medusabackupjobs]
    verbs: [get, create, patch, delete]
  - apiGroups: [medusa.k8ssandra.io]
    resources: [medusabackups]
    verbs: [get, delete]
  - apiGroups: [medusa.k8ssandra.io]
    resources: [medusarestorejobs, medusatasks]
    verbs: [get, create, patch]
  - apiGroups: [k8ssandra.io]
    resources: [k8ssandraclusters]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: coffer-plugin-medusa, namespace: db}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: coffer-plugin-medusa}
subjects: [{kind: ServiceAccount, name: coffer-plugin, namespace: db}]
"#;

/// Names of the objects of `api`, sorted.
async fn names_in(api: Api<DynamicObject>) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    v.sort();
    v
}

/// Names of the Medusa objects of `kind` in namespace db.
async fn names(env: &Env, kind: &str) -> Vec<String> {
    names_in(op::api(&env.client, "db", kind)).await
}

async fn names_rp(env: &Env) -> Vec<String> {
    names_in(coffer_api(&env.client, "RestorePoint", "db")).await
}

/// Set (or with `null`, remove) an injection annotation on the datacenter.
async fn inject(env: &Env, key: &str, value: Value) {
    op::datacenters(&env.client, "db")
        .patch(
            "dc1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

fn backup(params: Value) -> Value {
    json!({"action": "backup", "workload": "cassandradatacenter/dc1", "params": params})
}

fn restore(rp: &str, params: Value) -> Value {
    json!({"action": "restore", "workload": "cassandradatacenter/dc1",
           "restorePoint": rp, "params": params})
}

#[tokio::test(flavor = "multi_thread")]
async fn k8ssandra_backs_up_and_restores_through_medusas_operator_api_despite_its_status_bugs() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    kube.apply(op::CRDS).await;
    kube.apply(PLUGIN_ROLE).await;
    let node = Cassandra::shared();
    node.cql(
        "CREATE KEYSPACE IF NOT EXISTS k8s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}; \
         CREATE TABLE IF NOT EXISTS k8s.orders (id int PRIMARY KEY, note text);",
    );
    node.insert(TABLE, 0..150);
    let at_full = node.rows(TABLE);
    assert_eq!(at_full.len(), 150);

    let grpc = Arc::new(MedusaGrpc::start(node));
    let _operator = FakeOperator::start(&kube.kubeconfig, "db", "dc1", POD, node, grpc.clone());
    kube.apply(
        r#"apiVersion: cassandra.datastax.com/v1beta1
kind: CassandraDatacenter
metadata: {name: dc1, namespace: db, annotations: {coffer.dev/blueprint: medusa}}
spec: {clusterName: demo, serverType: cassandra, serverVersion: 5.0.9, size: 1}
"#,
    )
    .await;
    let _daemon = env.daemon("coffer-medusa", coffer_tests::free_port());

    // A full backup: a MedusaBackupJob named as the backup, its MedusaBackup SUCCESS.
    let status = env.completed(backup(json!({"mode": "full"}))).await;
    let full = status["outputs"]["backup"].as_str().unwrap().to_string();
    assert!(full.starts_with("coffer-"), "{status:#}");
    assert_eq!(status["outputs"]["datacenter"], "dc1");
    assert!(
        status["outputs"]["storage"]
            .as_str()
            .unwrap()
            .contains("pruned only by its purge"),
        "{status:#}"
    );
    assert!(
        status["outputs"]["files"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 10,
        "{status:#}"
    );
    let b = op::api(&env.client, "db", "MedusaBackup")
        .get(&full)
        .await
        .unwrap();
    assert_eq!(b.data["status"]["status"], "SUCCESS");
    assert_eq!(b.data["spec"]["backupType"], "full");
    assert!(names(&env, "MedusaBackupJob").await.contains(&full));
    let rp_full = status["restorePoint"].as_str().unwrap().to_string();

    // A differential while the job's finishTime is the epoch (k8ssandra-operator#1301):
    // coffer waits for the real end.
    node.insert(TABLE, 150..230);
    let at_diff = node.rows(TABLE);
    inject(&env, op::EPOCH_FINISH, json!("true")).await;
    let status = env.completed(backup(json!({}))).await;
    inject(&env, op::EPOCH_FINISH, Value::Null).await;
    let diff = status["outputs"]["backup"].as_str().unwrap().to_string();
    assert_eq!(status["outputs"]["mode"], "differential");
    let job = op::api(&env.client, "db", "MedusaBackupJob")
        .get(&diff)
        .await
        .unwrap();
    assert!(
        job.data["status"]["finishTime"].as_str().unwrap()
            >= job.data["status"]["startTime"].as_str().unwrap(),
        "{:#}",
        job.data["status"]
    );
    let rp_diff = status["restorePoint"].as_str().unwrap().to_string();

    // TRUNCATE, then the full comes back: rows equal; no safety backup left behind.
    node.cql(&format!("TRUNCATE {TABLE}"));
    assert!(node.rows(TABLE).is_empty());
    let status = env.completed(restore(&rp_full, json!({}))).await;
    assert_eq!(node.rows(TABLE), at_full, "{status:#}");
    assert!(!status["outputs"]["restoreKey"].as_str().unwrap().is_empty());
    assert!(
        status["outputs"]["datacenterStopped"].is_string(),
        "{status:#}"
    );
    let left = names(&env, "MedusaBackup").await;
    assert!(
        !left.iter().any(|n| n.contains("before-restore")),
        "a safety backup was left: {left:?}"
    );

    // The operator refuses a restore (its `message`): Failed, the data untouched.
    inject(
        &env,
        op::RESTORE_MESSAGE,
        json!("target datacenter topology differs"),
    )
    .await;
    env.expect_failure(
        restore(&rp_diff, json!({})),
        "target datacenter topology differs",
    )
    .await;
    inject(&env, op::RESTORE_MESSAGE, Value::Null).await;
    assert_eq!(node.rows(TABLE), at_full);
    let left = names(&env, "MedusaBackup").await;
    assert!(
        !left.iter().any(|n| n.contains("before-restore")),
        "{left:?}"
    );

    // A MedusaBackup that says IN_PROGRESS with every node finished (cassandra-medusa#965):
    // complete, with a warning. (Full: after an in-place restore Cassandra's SSTable names
    // repeat, and a differential would overwrite objects older backups use, #523.)
    inject(&env, op::IN_PROGRESS, json!("true")).await;
    let status = env.completed(backup(json!({"mode": "full"}))).await;
    inject(&env, op::IN_PROGRESS, Value::Null).await;
    let warnings = status["outputs"]["warnings"].as_str().unwrap_or_default();
    assert!(warnings.contains("cassandra-medusa#965"), "{status:#}");

    // A node whose Medusa is down: Failed naming the pod; the MedusaBackup the operator
    // makes anyway (#1383) and the job are gone; no restore point.
    let rps_before = names_rp(&env).await;
    grpc.stop();
    inject(&env, op::BACKUP_FOR_FAILED, json!("true")).await;
    let failed = env
        .expect_failure(backup(json!({"mode": "full"})), POD)
        .await;
    grpc.start_again();
    inject(&env, op::BACKUP_FOR_FAILED, Value::Null).await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("nothing was recorded"),
        "{failed:#}"
    );
    assert_eq!(names_rp(&env).await, rps_before);
    let (jobs, backups) = (
        names(&env, "MedusaBackupJob").await,
        names(&env, "MedusaBackup").await,
    );
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    assert_eq!(backups.len(), 3, "{backups:?}");

    // A job that never finishes (#1380): Failed after params.waitMinutes, nothing left.
    inject(&env, op::NEVER_FINISH, json!("true")).await;
    env.expect_failure(
        backup(json!({"mode": "full", "waitMinutes": 0.5})),
        "k8ssandra-operator#1380",
    )
    .await;
    inject(&env, op::NEVER_FINISH, Value::Null).await;
    assert_eq!(names(&env, "MedusaBackupJob").await.len(), 3);
    assert_eq!(names_rp(&env).await, rps_before);

    // A restore that fails after the operator stopped the datacenter (the node does not
    // start on the restored data): the safety backup is restored, the node serves its
    // rows from before.
    node.insert(TABLE, 300..340);
    let now = node.rows(TABLE);
    node.fail_next_start();
    env.expect_failure(
        restore(&rp_diff, json!({})),
        "put back on its data from before the restore",
    )
    .await;
    assert!(node.up(), "the node was left down");
    assert_eq!(node.rows(TABLE), now);

    // The differential restores.
    env.completed(restore(&rp_diff, json!({}))).await;
    assert_eq!(node.rows(TABLE), at_diff);

    // verify: the MedusaBackup is there and complete; once deleted, verify fails.
    env.completed(
        json!({"action": "verify", "workload": "cassandradatacenter/dc1", "restorePoint": rp_diff}),
    )
    .await;

    // A K8ssandraCluster names its datacenter.
    kube.apply(
        r#"apiVersion: k8ssandra.io/v1alpha1
kind: K8ssandraCluster
metadata: {name: demo, namespace: db, annotations: {coffer.dev/blueprint: medusa}}
spec: {cassandra: {serverVersion: 5.0.9, datacenters: [{metadata: {name: dc1}, size: 1}, {metadata: {name: dc2}, size: 1}]}}
"#,
    )
    .await;
    env.expect_failure(
        json!({"action": "backup", "workload": "k8ssandracluster/demo"}),
        "has 2 datacenters (dc1, dc2)",
    )
    .await;
    let status = env
        .completed(
            json!({"action": "backup", "workload": "k8ssandracluster/demo",
                          "params": {"datacenter": "dc1", "mode": "full"}}),
        )
        .await;
    assert_eq!(status["outputs"]["datacenter"], "dc1");

    // Delete with purge: the objects go, the restore point goes, a purge task ran.
    let status = env
        .completed(
            json!({"action": "delete", "workload": "cassandradatacenter/dc1",
                          "restorePoint": rp_full, "params": {"purge": true}}),
        )
        .await;
    assert!(status["outputs"]["backupsPurged"].is_string(), "{status:#}");
    assert!(!names(&env, "MedusaBackup").await.contains(&full));
    assert!(!names(&env, "MedusaBackupJob").await.contains(&full));
    assert!(env.get("RestorePoint", &rp_full).await.is_none());
    let tasks = op::api(&env.client, "db", "MedusaTask")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        tasks
            .items
            .iter()
            .any(|t| t.data["spec"]["operation"] == "purge"
                && t.data["status"]["finished"][0]["podName"] == POD),
        "{:?}",
        tasks.items.iter().map(|t| &t.data).collect::<Vec<_>>()
    );

    // The differential's MedusaBackup deleted by hand: its restore fails before touching
    // anything, and verify fails.
    op::api(&env.client, "db", "MedusaBackup")
        .delete(&diff, &Default::default())
        .await
        .unwrap();
    let before = node.rows(TABLE);
    env.expect_failure(restore(&rp_diff, json!({})), "was not touched")
        .await;
    env.expect_failure(
        json!({"action": "verify", "workload": "cassandradatacenter/dc1", "restorePoint": rp_diff}),
        "does not exist",
    )
    .await;
    assert_eq!(node.rows(TABLE), before);
    env.assert_daemon_rbac();
}
