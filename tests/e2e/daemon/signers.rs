//! Signers on a real control plane: the daemon reads the Signer a Blueprint grants from its
//! namespace, and the keys from the Secret the Signer names, and signs the plugin's
//! requests with them (s3s-fs checks the signature); the keys are in no status, event or
//! log; a Blueprint granting a Signer that does not exist fails before its plugin runs.

use crate::env::*;
use coffer_tests::s3::{S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs};

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_signs_with_a_signer_whose_keys_are_in_a_secret() {
    let env = Env::start().await;
    let s3 = S3sFs::start();
    let bucket = s3.create_bucket("signed");
    Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(
        env.client.clone(),
        "coffer",
    )
    .create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "aws-keys"},
                "stringData": {"id": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY}}))
        .unwrap(),
    )
    .await
    .unwrap();
    coffer_api(&env.client, "Signer", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Signer",
                "metadata": {"name": "aws"},
                "spec": {"type": "aws-sigv4", "region": "us-east-1", "endpoint": s3.endpoint(),
                         "credentials": {"accessKeyId": {"secret": {"name": "aws-keys", "key": "id"}},
                                         "secretAccessKey": {"secret": {"name": "aws-keys", "key": "secret"}}}}})),
        )
        .await
        .unwrap();
    let e = s3.endpoint();
    for (name, signer) in [("signed", "aws"), ("unsigned", "nosuch")] {
        env.hostile_blueprint(
            name,
            json!({"grants": {"location": ["read", "write", "delete"],
                              "signedHttp": [{"signer": signer, "service": "s3"}]},
                   "params": {"backup": {"mode": "signed", "requests": [
                       {"signer": "aws", "method": "PUT", "url": format!("{e}/signed/from-the-daemon"), "body": "signed in the cluster"},
                       {"signer": "aws", "method": "GET", "url": format!("{e}/")}]}}}),
        )
        .await;
        env.statefulset(
            &format!("app-{name}"),
            vec![],
            json!({"coffer.dev/blueprint": name}),
        )
        .await;
    }
    let _daemon = env.daemon("coffer-sig", coffer_tests::free_port());
    let set = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app-signed"}))
        .await;
    let status = env.finished(&set).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    assert!(
        status["outputs"]["r0"].as_str().unwrap().starts_with("200"),
        "{status:#}"
    );
    assert!(
        status["outputs"]["r1"]
            .as_str()
            .unwrap()
            .contains("<Name>signed</Name>"),
        "{status:#}"
    );
    assert_eq!(
        std::fs::read_to_string(bucket.join("from-the-daemon")).unwrap(),
        "signed in the cluster"
    );
    let text = format!("{status}\n{}", env.daemon_logs());
    assert!(
        !text.contains(S3S_SECRET_KEY),
        "the secret key was recorded"
    );

    let set = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app-unsigned"}))
        .await;
    let status = env.finished(&set).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    let err = status["error"].as_str().unwrap();
    assert!(
        err.contains("Signer nosuch") && err.contains("not found"),
        "{err}"
    );
    assert!(!bucket.join("unsigned").exists());
    env.assert_daemon_rbac();
}
