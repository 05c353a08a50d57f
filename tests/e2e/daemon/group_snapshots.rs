//! Several claims cut at one instant on Kubernetes: where the claims' CSI driver has a
//! VolumeGroupSnapshotClass, `snapshot.create-group` makes one VolumeGroupSnapshot (the
//! simulator's driver copies every selected claim at one moment) and hands the plugin its
//! member snapshots; the claims carry the group's label only for the cut; the restore
//! point restores each claim from its member; deleting it deletes the group.

use crate::env::*;
use coffer_tests::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use coffer_tests::kube_sim::{CUT_AFTER_MS, PATH_ANNOTATION, READY_AFTER_MS};

fn api(env: &Env, group: &str, version: &str, kind: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    match ns {
        Some(ns) => Api::namespaced_with(env.client.clone(), ns, &ar),
        None => Api::all_with(env.client.clone(), &ar),
    }
}

/// The local directory of claim `name` in `db`, once bound.
async fn claim_dir(claims: &Api<PersistentVolumeClaim>, name: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = claims.get(name).await.unwrap();
        if let Some(p) = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PATH_ANNOTATION))
        {
            return PathBuf::from(p);
        }
        assert!(Instant::now() < deadline, "claim {name} was never bound");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_cut_together_in_one_volume_group_snapshot() {
    let env = Env::start_sim().await;
    api(&env, "storage.k8s.io", "v1", "StorageClass", None)
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "sim"}, "provisioner": "sim.coffer.dev"}),
            ),
        )
        .await
        .unwrap();
    api(&env, "groupsnapshot.storage.k8s.io", "v1beta2", "VolumeGroupSnapshotClass", None)
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "groupsnapshot.storage.k8s.io/v1beta2", "kind": "VolumeGroupSnapshotClass",
                "metadata": {"name": "group"}, "driver": "sim.coffer.dev", "deletionPolicy": "Delete",
                "parameters": {CUT_AFTER_MS: "300", READY_AFTER_MS: "600"}})),
        )
        .await
        .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "db");
    let mut originals = Vec::new();
    for name in ["data", "logs"] {
        claims
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "labels": {"app": "shop"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sim",
                             "resources": {"requests": {"storage": "1Gi"}}}}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let dir = claim_dir(&claims, name).await;
        std::fs::write(dir.join(name), coffer_tests::random_hex(50_000)).unwrap();
        originals.push((name, dir.clone(), tree_digest(&dir)));
    }
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "grouped"},
                "spec": {"plugin": {"builtin": "volumes"},
                         "grants": {"snapshot": true, "location": ["read", "write", "delete"]},
                         "params": {"backup": {"volumes": ["data", "logs"], "export": false}}}}),
            ),
        )
        .await
        .unwrap();
    env.statefulset("shop", vec![], json!({"coffer.dev/blueprint": "grouped"}))
        .await;
    let _daemon = env.daemon("coffer-g", coffer_tests::free_port());
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/shop"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    // Changed after the cut: the restore must bring back what was cut.
    for (name, dir, _) in &originals {
        std::fs::write(dir.join(name), "changed after the backup").unwrap();
    }

    let snapshots = api(
        &env,
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshot",
        Some("db"),
    );
    let names: Vec<String> = status["outputs"]["snapshots"]
        .as_str()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(names.len(), 2, "{status:#}");
    let mut groups = Vec::new();
    for (snap, claim) in names.iter().zip(["data", "logs"]) {
        let s = snapshots.get(snap).await.unwrap();
        assert_eq!(s.data["spec"]["source"]["persistentVolumeClaimName"], claim);
        groups.push(
            s.data["status"]["volumeGroupSnapshotName"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(groups[0], groups[1], "the claims were not cut in one group");
    let vgs_api = api(
        &env,
        "groupsnapshot.storage.k8s.io",
        "v1beta2",
        "VolumeGroupSnapshot",
        Some("db"),
    );
    let vgs = vgs_api.get(&groups[0]).await.unwrap();
    assert_eq!(vgs.data["spec"]["volumeGroupSnapshotClassName"], "group");
    for claim in ["data", "logs"] {
        let labels = claims
            .get(claim)
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap_or_default();
        assert!(
            !labels.contains_key("coffer.dev/snapshot-group"),
            "{claim} keeps the group label: {labels:?}"
        );
        assert_eq!(labels["app"], "shop", "{claim}'s own labels were touched");
    }

    let restore = env
        .action_set(json!({"action": "restore", "workload": "statefulset/shop",
                           "restorePoint": status["restorePoint"],
                           "params": {"volumes": {"data": "data-copy", "logs": "logs-copy"}}}))
        .await;
    let restored = env.finished(&restore).await;
    assert_eq!(restored["phase"], "Completed", "{restored:#}");
    for (name, _, digest) in &originals {
        let dir = claim_dir(&claims, &format!("{name}-copy")).await;
        assert_eq!(&tree_digest(&dir), digest, "{name} was not restored as cut");
    }

    let delete = env
        .action_set(json!({"action": "delete", "workload": "statefulset/shop",
                           "restorePoint": status["restorePoint"]}))
        .await;
    assert_eq!(env.finished(&delete).await["phase"], "Completed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while vgs_api.get_opt(&groups[0]).await.unwrap().is_some()
        || snapshots.get_opt(&names[0]).await.unwrap().is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the group or its members outlived the restore point"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.assert_daemon_rbac();
}
