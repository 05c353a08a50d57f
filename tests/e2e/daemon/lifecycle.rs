//! An action's life: cancelled, deleted, out of time, stopped by SIGTERM, its daemon
//! killed; only the Lease holder runs actions.

use crate::env::*;

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
    env.assert_daemon_rbac();
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
    env.assert_daemon_rbac();
}
