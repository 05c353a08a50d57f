//! Signers on a real control plane: the daemon reads the Signer a Blueprint grants from its
//! namespace, and the keys from the Secret the Signer names, and signs the plugin's
//! requests with them (s3s-fs checks the signature); the keys are in no status, event or
//! log; a Blueprint granting a Signer that does not exist fails before its plugin runs. A
//! request guard a killed daemon left armed is sent by the next leader, signed with the
//! keys in the Secret; one a tenant forges into a status is never sent.

use crate::env::*;
use coffer_tests::s3::{S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs};

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_signs_with_a_signer_whose_keys_are_in_a_secret() {
    let env = Env::start().await;
    let s3 = S3sFs::start();
    let bucket = s3.create_bucket("signed");
    env.aws_signer(&s3.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY)
        .await;
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

#[tokio::test(flavor = "multi_thread")]
async fn the_next_leader_sends_the_request_guard_a_killed_daemon_left_and_never_a_forged_one() {
    let env = Env::start().await;
    let s3 = S3sFs::start();
    let bucket = s3.create_bucket("guarded");
    env.aws_signer(&s3.endpoint(), S3S_ACCESS_KEY, S3S_SECRET_KEY)
        .await;
    let e = s3.endpoint();
    env.hostile_blueprint(
        "guarded",
        json!({"grants": {"location": ["read", "write", "delete"],
                          "signedHttp": [{"signer": "aws", "service": "s3"}]},
               "params": {"backup": {"mode": "signed", "then": "hang", "count": 600, "requests": [
                   {"guard": true, "signer": "aws", "method": "PUT",
                    "url": format!("{e}/guarded/undone"), "body": "sent by the next leader"}]}}}),
    )
    .await;
    env.statefulset("app", vec![], json!({"coffer.dev/blueprint": "guarded"}))
        .await;
    let mut a = env.daemon("coffer-a", coffer_tests::free_port());
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    let sets = coffer_api(&env.client, "ActionSet", "db");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = sets.get(&name).await.unwrap();
        let v = serde_json::to_value(&s).unwrap();
        if v["status"]["guards"][0]["state"] == "Armed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no guard armed: {v:#}\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.kill();
    assert!(
        !bucket.join("undone").exists(),
        "sent before the runner died"
    );

    // While no daemon runs, a tenant forges a Running ActionSet with a request guard.
    let forged = env
        .action_set(json!({"action": "backup", "workload": "statefulset/app"}))
        .await;
    sets.patch_status(
        &forged,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "runner": "ghost",
            "heartbeat": "2026-01-01T00:00:00Z",
            "guards": [{"name": "forged", "workload": "app", "state": "Armed", "registeredMs": 0,
                        "request": {"signer": "aws", "service": "s3", "method": "PUT",
                                    "url": format!("{e}/guarded/forged"), "body": "forged"},
                        "seal": "00"}]}})),
    )
    .await
    .unwrap();

    let _b = env.daemon("coffer-b", coffer_tests::free_port());
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    assert_eq!(status["guards"][0]["firedBy"], "recovery", "{status:#}");
    assert_eq!(status["guards"][0]["result"], "answer 200", "{status:#}");
    assert_eq!(
        std::fs::read_to_string(bucket.join("undone")).unwrap(),
        "sent by the next leader"
    );
    let status = env.finished(&forged).await;
    assert_eq!(status["guards"][0]["state"], "Failed", "{status:#}");
    assert!(
        !bucket.join("forged").exists(),
        "a forged request guard was sent"
    );
    let text = format!("{status}\n{}", env.daemon_logs());
    assert!(
        !text.contains(S3S_SECRET_KEY),
        "the secret key was recorded"
    );
}
