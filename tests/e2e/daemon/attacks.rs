//! What a tenant's plugin tries through the `kube` capability: another namespace, a
//! namespace or name that is really a URL path, and acting with the daemon's identity.

use super::env::*;
use coffer_tests::k8s_openapi::api::core::v1::ConfigMap;

#[tokio::test(flavor = "multi_thread")]
async fn plugin_kube_calls_stay_in_the_subject_namespace_and_act_as_its_service_account() {
    // On the simulator: the assertions read the record of every request made.
    let env = Env::start_sim().await;
    for (ns, name, data) in [
        ("db", "app-config", "mine"),
        ("kube-system", "cluster-info", "not yours"),
    ] {
        Api::<ConfigMap>::namespaced(env.client.clone(), ns)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"k": data}}))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    env.hostile_blueprint(
        "curious",
        json!({"serviceAccount": "backup-agent",
                         "grants": {"kube": [{"apiGroup": "", "kind": "ConfigMap", "verbs": ["get", "list", "apply"]}],
                                    "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "kube-escape"}}}),
    )
    .await;
    env.statefulset("app", vec![], json!({"coffer.dev/blueprint": "curious"}))
        .await;
    let before = env.sim().requests().len();
    // The attempts and their outcomes are the backup's outputs.
    let (set, text) = env.local_backup("statefulset/app");
    assert_eq!(set["status"]["phase"], "Completed", "{text}");
    let described = set["status"]["outputs"].to_string();
    let requests = env.sim().requests()[before..].to_vec();

    // Nothing in kube-system was asked for, and no Secret but the Profile's own (read by
    // the host in its namespace, not by the plugin).
    for r in &requests {
        assert!(
            !r.path.contains("/secrets")
                || (r.impersonate.is_none()
                    && r.path.starts_with("/api/v1/namespaces/coffer/secrets")),
            "a Secret was requested: {r:?}"
        );
        assert!(
            r.impersonate.is_some() || !r.path.contains("/configmaps"),
            "a plugin call went out as the daemon: {r:?}"
        );
        assert!(
            !r.path.contains("kube-system"),
            "namespace kube-system was reached: {r:?}\n{described}"
        );
    }
    // The plugin's own calls (ConfigMaps) impersonate the Blueprint's ServiceAccount.
    let plugin_calls: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/configmaps"))
        .collect();
    assert!(
        !plugin_calls.is_empty(),
        "no ConfigMap call reached the cluster:\n{described}"
    );
    for r in &plugin_calls {
        assert_eq!(
            r.impersonate.as_deref(),
            Some("system:serviceaccount:db:backup-agent"),
            "{r:?}"
        );
    }
    // What the plugin got back: refusals naming why, and its own namespace's object.
    for (key, want) in [
        ("injectedNamespace", "not a valid Kubernetes namespace"),
        ("otherNamespace", "namespace kube-system"),
        ("pathName", "not a valid Kubernetes object name"),
        ("otherList", "namespace kube-system"),
        ("applyElsewhere", "namespace kube-system"),
        ("ownNamespace", "ALLOWED"),
    ] {
        assert!(
            described.contains(key) && described.contains(want),
            "{key}: {want} missing:\n{described}"
        );
    }
    assert!(
        Api::<ConfigMap>::namespaced(env.client.clone(), "kube-system")
            .get_opt("planted")
            .await
            .unwrap()
            .is_none(),
        "a ConfigMap was planted in kube-system"
    );
}

/// A RestorePoint resource is the tenant's to write: one copied into another namespace, or
/// pointed at another namespace's objects, is refused, and the objects stay.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_restore_point_cannot_reach_another_namespaces_backups() {
    let env = Env::start().await;
    env.hostile_blueprint(
        "plain",
        json!({"grants": {"location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "ok"}}}),
    )
    .await;
    env.statefulset("app", vec![], json!({"coffer.dev/blueprint": "plain"}))
        .await;
    // The victim's backup, in namespace db.
    let (set, text) = env.local_backup("statefulset/app");
    assert_eq!(set["status"]["phase"], "Completed", "{text}");
    let rp_name = set["status"]["restorePoint"].as_str().unwrap().to_string();
    let rp = env.get("RestorePoint", &rp_name).await.unwrap();
    let prefix = rp.data["spec"]["prefix"].as_str().unwrap().to_string();
    let objects = env.objects_under(&prefix);
    assert!(!objects.is_empty());

    // The tenant of namespace tenant copies it into theirs and asks for a restore and a
    // delete; then points one of their own at the victim's prefix.
    env.namespace("tenant").await;
    for (name, spec) in [
        (rp_name.clone(), rp.data["spec"].clone()),
        ("mine".to_string(), {
            let mut s = rp.data["spec"].clone();
            s["workload"] = "statefulset/app".into();
            s
        }),
    ] {
        coffer_api(&env.client, "RestorePoint", "tenant")
            .create(
                &PostParams::default(),
                &obj(
                    json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "RestorePoint",
                    "metadata": {"name": name, "namespace": "tenant"}, "spec": spec}),
                ),
            )
            .await
            .unwrap();
        for args in [
            vec!["delete", name.as_str()],
            vec!["restore", "statefulset/app", "--from", name.as_str()],
        ] {
            let action = args[0];
            let mut args = args.clone();
            args.extend(["-n", "tenant", "--local-run", "-o", "json"]);
            let out = env.cli(&args);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !out.status.success(),
                "{action} of a forged RestorePoint succeeded: {text}"
            );
            assert!(
                text.contains("cannot point elsewhere") || text.contains("not found"),
                "{action}: {text}"
            );
        }
    }
    assert_eq!(
        env.objects_under(&prefix),
        objects,
        "the victim's objects changed"
    );
}

/// A `--local-run` CLI and the daemon never both run an ActionSet, and the daemon never
/// takes a live CLI run for a lost one: the CLI claims it with a resourceVersion
/// precondition, and its heartbeat keeps the leader from settling it.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_local_run_is_neither_taken_nor_settled_by_the_daemon() {
    let env = Env::start().await;
    env.hostile_blueprint(
        "slow",
        json!({"grants": {"exec": ["sleep *"], "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "slow-ok", "bytes": 9}}}),
    )
    .await;
    env.statefulset("app", vec![], json!({"coffer.dev/blueprint": "slow"}))
        .await;
    let mut daemon = env.daemon("leader", coffer_tests::free_port());
    // The daemon leads before the CLI starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (set, text) = env.local_backup("statefulset/app");
    let log = daemon.log();
    daemon.kill();
    assert_eq!(
        set["status"]["phase"], "Completed",
        "{text}\n--- daemon:\n{log}"
    );
    let runner = set["status"]["runner"].as_str().unwrap_or_default();
    assert!(runner.starts_with("cli-"), "runner {runner}");
    let name = set["metadata"]["name"].as_str().unwrap();
    let touched = log
        .lines()
        .filter(|l| l.contains(name))
        .any(|l| l.contains("starting") || l.contains("stopped before") || l.contains("claimed"));
    assert!(!touched, "the daemon touched the CLI's action:\n{log}");
    env.assert_daemon_rbac();
}
