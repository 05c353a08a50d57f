//! An RDS database protected from the cluster, on a real control plane: its subject is a
//! ConfigMap (no pods: the database runs in AWS) annotated with the built-in Blueprint
//! `rds`, its params in `data.params`; the daemon signs the RDS calls with the Signer of
//! its namespace (keys in a Secret) and moto plays RDS. A backup makes the snapshot, a
//! restore a new instance beside the live one, a delete removes the snapshot.

use crate::env::*;
use coffer_tests::k8s_openapi::api::core::v1::ConfigMap;
use coffer_tests::s3::{Moto, xml_all};

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_names_an_rds_instance_the_daemon_snapshots_restores_and_deletes() {
    let env = Env::start().await;
    let moto = Moto::start();
    let created = moto.rds("Action=CreateDBInstance&DBInstanceIdentifier=shop&DBInstanceClass=db.m5.large&Engine=postgres&EngineVersion=15.4&AllocatedStorage=20&MasterUsername=admin&MasterUserPassword=secret123");
    assert!(created.contains("<DBInstanceIdentifier>shop<"), "{created}");
    env.aws_signer(&moto.endpoint(), "AKIDCLUSTER", "cluster-rds-secret")
        .await;
    let params = format!(
        "backup: {{instance: shop, region: us-east-1, apiEndpoint: \"{}\"}}\n",
        moto.endpoint()
    );
    Api::<ConfigMap>::namespaced(env.client.clone(), "db")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "shop-db", "annotations": {"coffer.dev/blueprint": "rds"}},
                "data": {"params": params}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let _daemon = env.daemon("coffer-rds", coffer_tests::free_port());

    let backup = env
        .action_set(json!({"action": "backup", "workload": "configmap/shop-db"}))
        .await;
    let status = env.finished(&backup).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    let snapshot = status["outputs"]["snapshot"].as_str().unwrap().to_string();
    let snaps = moto.rds("Action=DescribeDBSnapshots&DBInstanceIdentifier=shop");
    assert!(
        xml_all(&snaps, "DBSnapshotIdentifier").contains(&snapshot),
        "{snaps}"
    );
    let rp = status["restorePoint"].as_str().unwrap().to_string();

    let restore = env
        .action_set(json!({"action": "restore", "workload": "configmap/shop-db",
                           "restorePoint": rp, "params": {"newName": "shop-copy"}}))
        .await;
    let restored = env.finished(&restore).await;
    assert_eq!(restored["phase"], "Completed", "{restored:#}");
    assert_eq!(restored["outputs"]["instance"], "shop-copy");
    let twin = moto.rds("Action=DescribeDBInstances&DBInstanceIdentifier=shop-copy");
    assert_eq!(xml_all(&twin, "DBInstanceClass"), ["db.m5.large"], "{twin}");

    let delete = env
        .action_set(json!({"action": "delete", "workload": "configmap/shop-db",
                           "restorePoint": rp}))
        .await;
    assert_eq!(env.finished(&delete).await["phase"], "Completed");
    let snaps = moto.rds("Action=DescribeDBSnapshots&DBInstanceIdentifier=shop");
    assert!(
        !xml_all(&snaps, "DBSnapshotIdentifier").contains(&snapshot),
        "{snaps}"
    );

    // A ConfigMap whose params are not a map fails with what to write.
    Api::<ConfigMap>::namespaced(env.client.clone(), "db")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "bad-db", "annotations": {"coffer.dev/blueprint": "rds"}},
                "data": {"params": "backup: shop"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bad = env
        .action_set(json!({"action": "backup", "workload": "configmap/bad-db"}))
        .await;
    let status = env.finished(&bad).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    let err = status["error"].as_str().unwrap();
    assert!(
        err.contains("data.params") && err.contains("must be a map"),
        "{err}"
    );
    let text = format!(
        "{}\n{}",
        serde_json::to_string(&status).unwrap(),
        env.daemon_logs()
    );
    assert!(
        !text.contains("cluster-rds-secret"),
        "the secret key was recorded"
    );
    env.assert_daemon_rbac();
}
