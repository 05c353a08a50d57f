//! CSI snapshots and task pods next to a claim's data.

use crate::env::*;

#[tokio::test]
async fn csi_snapshots_and_task_pods_work_next_to_the_data() {
    use coffer_tests::k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let env = Env::start_sim().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "db");
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sim",
                         "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dir = loop {
        let c = claims.get("data").await.unwrap();
        if let Some(p) = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(coffer_tests::kube_sim::PATH_ANNOTATION))
        {
            break PathBuf::from(p);
        }
        assert!(Instant::now() < deadline, "the claim was never bound");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    std::fs::create_dir_all(dir.join("base/16384")).unwrap();
    std::fs::write(
        dir.join("base/16384/1259"),
        coffer_tests::random_hex(300_000),
    )
    .unwrap();
    std::fs::write(dir.join("PG_VERSION"), "15\n").unwrap();
    let original = tree_digest(&dir);

    let plugin = coffer_tests::test_plugin("hostile");
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "snaps"},
                "spec": {"plugin": {"path": plugin},
                         "grants": {"snapshot": true, "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "snapshot", "pvc": "data", "target": "data-restored"}}}})),
        )
        .await
        .unwrap();
    env.statefulset("vol", vec![], json!({"coffer.dev/blueprint": "snaps"}))
        .await;
    let _daemon = env.daemon("coffer-s", coffer_tests::free_port());
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/vol"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    let out = &status["outputs"];
    assert_eq!(out["createdReady"], "false", "the snapshot was waited for");
    assert!(out["restoreSize"].as_str().unwrap().parse::<u64>().unwrap() >= 300_000);
    assert!(
        out["conflict"]
            .as_str()
            .unwrap()
            .contains("data-restored exists"),
        "{out}"
    );
    assert!(
        out["denied"]
            .as_str()
            .unwrap()
            .contains("namespace elsewhere"),
        "{out}"
    );
    let snap = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "db",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        )),
    )
    .get(out["snapshot"].as_str().unwrap())
    .await
    .unwrap();
    assert_eq!(
        snap.data["spec"]["source"]["persistentVolumeClaimName"],
        "data"
    );
    assert_eq!(snap.data["status"]["readyToUse"], true);
    assert_eq!(snap.metadata.labels.unwrap()["purpose"], "test");
    // The new claim holds exactly what the volume held when the snapshot was cut.
    std::fs::write(dir.join("PG_VERSION"), "changed after the snapshot\n").unwrap();
    let restored = claims.get("data-restored").await.unwrap();
    let spec = restored.spec.unwrap();
    assert_eq!(spec.data_source.unwrap().name, snap.metadata.name.unwrap());
    assert_eq!(spec.storage_class_name.as_deref(), Some("sim"));
    let rdir = PathBuf::from(
        &restored.metadata.annotations.unwrap()[coffer_tests::kube_sim::PATH_ANNOTATION],
    );
    assert_eq!(tree_digest(&rdir), original);

    // A task pod: the tool runs next to the claim, in an image the Blueprint grants; the
    // pod goes when the action ends.
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "tasks"},
                "spec": {"plugin": {"path": coffer_tests::test_plugin("hostile")},
                         "grants": {"images": ["busybox:*"], "exec": ["sh **"], "unsafeArgs": true, "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "task", "image": "busybox:1.36", "pvc": "data"}}}})),
        )
        .await
        .unwrap();
    // Its subject mounts the claim: a task pod may mount only the subject's claims.
    apps(&env.client, "db")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "tool", "labels": {"app": "tool"}, "annotations": {"coffer.dev/blueprint": "tasks"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "tool"}},
                         "template": {"metadata": {"labels": {"app": "tool"}},
                                      "spec": {"securityContext": {"runAsUser": 999, "fsGroup": 999},
                                               "containers": [{"name": "postgres", "image": "postgres:15"}],
                                               "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}})),
        )
        .await
        .unwrap();
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/tool"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    let out = &status["outputs"];
    let pod = out["pod"].as_str().unwrap();
    assert!(pod.starts_with("coffer-task-"), "{out}");
    assert_eq!(out["same"], "true", "one task pod per action");
    assert_eq!(
        out["out"].as_str().unwrap(),
        format!("{pod}\nchanged after the snapshot\n"),
        "the command ran in the task pod, next to the claim's data"
    );
    assert!(
        out["denied"]
            .as_str()
            .unwrap()
            .contains("evil:latest: not granted by Blueprint tasks"),
        "{out}"
    );
    // The task pod as it was asked for: no API token, the subject's user, no escalation.
    let made = env
        .sim()
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/api/v1/namespaces/db/pods")
        .and_then(|r| r.body)
        .expect("the task pod's creation");
    assert_eq!(
        made["spec"]["automountServiceAccountToken"], false,
        "{made:#}"
    );
    assert_eq!(
        made["spec"]["securityContext"]["runAsUser"], 999,
        "{made:#}"
    );
    assert_eq!(made["spec"]["securityContext"]["fsGroup"], 999, "{made:#}");
    let c = &made["spec"]["containers"][0];
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"], false,
        "{made:#}"
    );
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"][0], "ALL",
        "{made:#}"
    );
    assert!(c["resources"]["limits"]["memory"].is_string(), "{made:#}");
    // A claim the subject does not mount is refused.
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "tasks-other"},
                "spec": {"plugin": {"path": coffer_tests::test_plugin("hostile")},
                         "grants": {"images": ["busybox:*"], "exec": ["sh **"], "unsafeArgs": true, "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "task", "image": "busybox:1.36", "pvc": "data-restored"}}}})),
        )
        .await
        .unwrap();
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/tool", "blueprint": "tasks-other"}),
        "a task pod may mount only the claims of StatefulSet db/tool",
    )
    .await;
    let pods: Api<coffer_tests::k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), "db");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pods.get_opt(pod).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the task pod outlived its action"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.assert_daemon_rbac();
}

/// VolumeSnapshotClasses `slow` (cut 800 ms after creation, ready 1500 ms after the cut),
/// `content` (as slow, with the cut time on the bound content only until ready) and
/// `broken` (the driver fails after the cut), and claim `data` in namespace `db`.
async fn timed_classes(env: &Env) {
    use coffer_tests::kube_sim::{CUT_AFTER_MS, CUT_ON_CONTENT, FAIL_AFTER_CUT, READY_AFTER_MS};
    let classes = Api::<DynamicObject>::all_with(
        env.client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshotClass",
        )),
    );
    for (name, params) in [
        ("slow", json!({CUT_AFTER_MS: "800", READY_AFTER_MS: "1500"})),
        (
            "content",
            json!({CUT_AFTER_MS: "800", READY_AFTER_MS: "1500", CUT_ON_CONTENT: "true"}),
        ),
        (
            "broken",
            json!({FAIL_AFTER_CUT: "the driver lost the snapshot"}),
        ),
    ] {
        classes
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                    "metadata": {"name": name}, "driver": "sim.coffer.dev", "deletionPolicy": "Delete",
                    "parameters": params})),
            )
            .await
            .unwrap();
    }
    let claims: Api<coffer_tests::k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(env.client.clone(), "db");
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sim",
                         "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
}

/// When the simulated driver cut the snapshot `name` of namespace `db` (unix ms).
async fn cut_ms(env: &Env, name: &str) -> i64 {
    let snap = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "db",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        )),
    )
    .get(name)
    .await
    .unwrap();
    snap.metadata.annotations.unwrap()["sim.coffer.dev/cut-ms"]
        .parse()
        .unwrap()
}

fn unix_ms(t: &serde_json::Value) -> i64 {
    let t = time::OffsetDateTime::parse(
        t.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Kasten K10's hook actions on the built-in `volumes` plugin: the posthook runs right
/// after the cut, before the snapshot is ready, and the backup ends only after readiness;
/// when the driver fails after the cut, the posthook has run all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posthook_runs_at_the_cut_before_the_snapshot_is_ready() {
    let env = Env::start_sim().await;
    timed_classes(&env).await;
    let marks = tempfile::tempdir().unwrap();
    let _daemon = env.daemon("coffer-h", coffer_tests::free_port());
    for (class, ok) in [("slow", true), ("broken", false)] {
        let mark = marks.path().join(class);
        coffer_api(&env.client, "Blueprint", "coffer")
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                    "metadata": {"name": format!("hooks-{class}")},
                    "spec": {"plugin": {"builtin": "volumes"},
                             "grants": {"snapshot": true, "exec": [format!("touch {}", mark.display())],
                                        "location": ["read", "write", "delete"]},
                             "params": {"backup": {"volumes": ["data"], "snapshotClass": class, "export": false,
                                                   "backupPosthook": [{"command": ["touch", mark]}]}}}})),
            )
            .await
            .unwrap();
        env.statefulset(
            &format!("hooked-{class}"),
            vec![],
            json!({"coffer.dev/blueprint": format!("hooks-{class}")}),
        )
        .await;
        let name = env
            .action_set(
                json!({"action": "backup", "workload": format!("statefulset/hooked-{class}")}),
            )
            .await;
        let status = env.finished(&name).await;
        assert!(mark.exists(), "{class}: the posthook did not run");
        assert_eq!(status["guards"][0]["firedBy"], "plugin", "{status:#}");
        if !ok {
            assert_eq!(status["phase"], "Failed", "{status:#}");
            let err = status["error"].as_str().unwrap();
            assert!(err.contains("the driver lost the snapshot"), "{err}");
            continue;
        }
        assert_eq!(status["phase"], "Completed", "{status:#}");
        let cut = cut_ms(&env, status["outputs"]["snapshots"].as_str().unwrap()).await;
        let posthook_ms = std::fs::metadata(&mark)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ready_ms = cut + 1500;
        assert!(
            posthook_ms >= cut - 50 && posthook_ms < ready_ms,
            "the posthook ran at {posthook_ms}, the cut was at {cut}, readiness at {ready_ms}"
        );
        assert!(
            unix_ms(&status["endTime"]) >= ready_ms,
            "completed before readiness"
        );
    }
}

/// A quiesced cut on a CSI driver that takes its time: `snapshot.create` returns once the
/// driver has cut (not when it is ready), so the application is unquiesced before the
/// snapshot is ready, and the action completes only after; a driver error after the cut
/// fails the backup, and the guard has run all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiesce_ends_at_the_cut_not_at_readiness() {
    let env = Env::start_sim().await;
    timed_classes(&env).await;
    let marks = tempfile::tempdir().unwrap();
    let _daemon = env.daemon("coffer-q", coffer_tests::free_port());
    for (class, ok) in [("slow", true), ("content", true), ("broken", false)] {
        let mark = marks.path().join(class);
        coffer_api(&env.client, "Blueprint", "coffer")
            .create(
                &PostParams::default(),
                &obj(
                    json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                    "metadata": {"name": format!("cut-{class}")},
                    "spec": {"plugin": {"path": coffer_tests::test_plugin("hostile")},
                             "grants": {"snapshot": true, "exec": ["touch **"], "unsafeArgs": true,
                                        "location": ["read", "write", "delete"]},
                             "params": {"backup": {"mode": "cut", "pvc": "data", "target": class,
                                                   "guards": [["touch", mark]]}}}}),
                ),
            )
            .await
            .unwrap();
        env.statefulset(
            &format!("app-{class}"),
            vec![],
            json!({"coffer.dev/blueprint": format!("cut-{class}")}),
        )
        .await;
        let name = env
            .action_set(json!({"action": "backup", "workload": format!("statefulset/app-{class}")}))
            .await;
        let status = env.finished(&name).await;
        assert!(mark.exists(), "{class}: the guard did not run");
        assert_eq!(status["guards"][0]["state"], "Fired", "{status:#}");
        if !ok {
            assert_eq!(status["phase"], "Failed", "{status:#}");
            let err = status["error"].as_str().unwrap();
            assert!(err.contains("the driver lost the snapshot"), "{err}");
            continue;
        }
        assert_eq!(status["phase"], "Completed", "{status:#}");
        let out = &status["outputs"];
        assert_eq!(out["createdReady"], "false", "create waited for readiness");
        assert!(!out["cutAt"].as_str().unwrap().is_empty(), "{out}");
        let window_ms: u64 = out["windowMs"].as_str().unwrap().parse().unwrap();
        assert!(
            window_ms >= 700,
            "create returned before the cut: {window_ms} ms"
        );
        assert_eq!(out["ready"], "true");
        // Unquiesced before the snapshot was ready; completed only after it was.
        let cut_ms = cut_ms(&env, out["snapshot"].as_str().unwrap()).await;
        let ready_ms = cut_ms + 1500;
        assert!(
            unix_ms(&status["quiesce"]["end"]) < ready_ms,
            "unquiesced after readiness: {:#}",
            status["quiesce"]
        );
        assert!(
            unix_ms(&status["endTime"]) >= ready_ms,
            "completed before readiness"
        );
    }
}
