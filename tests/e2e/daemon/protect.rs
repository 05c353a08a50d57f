//! Protecting workloads: annotation and BlueprintBinding, backups and restores of a real
//! PostgreSQL behind pod exec, through the CLI and ActionSets; what is refused and why.

use crate::env::*;

const TABLE: &str = "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2));
INSERT INTO items SELECT g, 'item ' || md5(g::text), g * 1.25 FROM generate_series(1, 5000) g;";
const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM items x";

#[tokio::test]
async fn annotated_and_bound_workloads_back_up_and_restore_through_the_daemon() {
    let env = Env::start().await;
    let pg = Postgres::start(Some("pod-secret-pw")).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", TABLE).unwrap();
    let original = pg.psql("shop", CHECK).unwrap();
    // The password reaches the plugin's `password` secret from a Secret in the namespace.
    Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), "db")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "pg-auth"}, "stringData": {"password": "pod-secret-pw"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    env.statefulset(
        "pg",
        pg_env(&pg),
        json!({"coffer.dev/blueprint": "postgres-logical",
               "secret.coffer.dev/password": "pg-auth/password"}),
    )
    .await;
    // Without a daemon, --local-run runs the ActionSet in the CLI process.
    let out = env.cli(&["backup", "statefulset/pg", "-n", "db", "--local-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sets = coffer_api(&env.client, "ActionSet", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    let local = &sets.items[0];
    assert_eq!(local.data["status"]["phase"], "Completed");
    assert!(
        local.data["status"]["runner"]
            .as_str()
            .unwrap()
            .starts_with("cli-")
    );
    let local_rp = local.data["status"]["restorePoint"].as_str().unwrap();
    assert!(env.get("RestorePoint", local_rp).await.is_some());

    let port = coffer_tests::free_port();
    let _daemon = env.daemon("coffer-a", port);

    // 1. The annotation, through the CLI: it creates an ActionSet and follows it.
    let out = env.cli(&["backup", "statefulset/pg", "-n", "db"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        _daemon.log()
    );
    let rp = stdout
        .split("RestorePoint ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the CLI names the restore point")
        .to_string();
    let rp_obj = env
        .get("RestorePoint", &rp)
        .await
        .expect("RestorePoint resource");
    assert_eq!(rp_obj.data["spec"]["workload"], "statefulset/pg");
    assert_eq!(rp_obj.data["spec"]["blueprint"], "postgres-logical");
    let prefix = rp_obj.data["spec"]["prefix"].as_str().unwrap().to_string();
    assert!(
        prefix.starts_with("restorepoints/db/statefulset-pg/"),
        "{prefix}"
    );
    let stored = env.objects_under(&prefix);
    assert!(
        stored
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".zst.age")),
        "the Profile's encryption applies: {stored:?}"
    );
    let sets = coffer_api(&env.client, "ActionSet", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    let set = sets
        .items
        .iter()
        .find(|s| s.data["status"]["restorePoint"] == rp.as_str())
        .unwrap();
    assert_eq!(set.data["status"]["phase"], "Completed");
    assert_eq!(set.data["status"]["runner"], "coffer-a");
    let described = env.cli(&[
        "describe",
        "actionset",
        set.metadata.name.as_deref().unwrap(),
        "-n",
        "db",
    ]);
    let text = String::from_utf8_lossy(&described.stdout);
    for want in [
        "Phase:        Completed",
        "Runner:       coffer-a",
        "Blueprint postgres-logical",
        "pg_dump",
    ] {
        assert!(
            text.contains(want),
            "describe lacks {want:?}:\n{text}{}",
            String::from_utf8_lossy(&described.stderr)
        );
    }
    // The finalizer goes in the update after the one that records Completed.
    let name = set.metadata.name.clone().unwrap();
    let api = coffer_api(&env.client, "ActionSet", "db");
    coffer_tests::kube_real::eventually(30, "the finished ActionSet's finalizer removed", || {
        let (api, name) = (api.clone(), name.clone());
        async move {
            api.get(&name)
                .await
                .is_ok_and(|s| s.metadata.finalizers.as_ref().is_none_or(Vec::is_empty))
        }
    })
    .await;
    let audit = set.data["status"]["audit"].to_string();
    assert!(
        audit.contains("pg_dump"),
        "the audit trail names the pod exec: {audit}"
    );
    assert!(
        !set.data.to_string().contains("pod-secret-pw"),
        "the password leaked into the ActionSet"
    );

    // Lose the data, restore through the CLI, compare.
    pg.psql("shop", "DROP TABLE items").unwrap();
    let out = env.cli(&[
        "restore",
        "statefulset/pg",
        "--from",
        &rp,
        "-n",
        "db",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("-o json prints the ActionSet");
    assert_eq!(printed["status"]["phase"], "Completed");
    assert_eq!(printed["spec"]["restorePoint"], rp.as_str());
    assert_eq!(
        pg.psql("shop", CHECK).unwrap(),
        original,
        "restored rows differ"
    );

    // 2. A BlueprintBinding instead: the annotation goes, a Blueprint resource and a
    // binding come; the binding's Blueprint is used.
    apps(&env.client, "db")
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"coffer.dev/blueprint": null}}})),
        )
        .await
        .unwrap();
    let bp_yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/postgres-logical.yaml"),
    )
    .unwrap();
    let mut bp: Value = serde_yaml_ng::from_str(&bp_yaml).unwrap();
    bp["metadata"]["name"] = json!("pg-bound");
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(&PostParams::default(), &obj(bp))
        .await
        .unwrap();
    coffer_api(&env.client, "BlueprintBinding", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "BlueprintBinding",
                "metadata": {"name": "databases"},
                "spec": {"blueprint": "pg-bound",
                         "match": {"kinds": ["StatefulSet"], "namespaces": ["d*"], "labels": {"app": "pg"}}}})),
        )
        .await
        .unwrap();
    let out = env.cli(&["get", "bindings", "-A"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l.contains("statefulset/pg")
            && l.contains("pg-bound")
            && l.contains("BlueprintBinding databases")),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.psql(
        "shop",
        "UPDATE items SET price = price + 1 WHERE id % 7 = 0",
    )
    .unwrap();
    let changed = pg.psql("shop", CHECK).unwrap();
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/pg"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    assert_eq!(status["blueprint"], "pg-bound");
    let rp2 = status["restorePoint"].as_str().unwrap().to_string();
    pg.psql("shop", "DELETE FROM items WHERE id > 100").unwrap();
    let name = env
        .action_set(json!({"action": "restore", "workload": "statefulset/pg", "restorePoint": rp2}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(status["phase"], "Completed", "{status:#}");
    assert_eq!(
        pg.psql("shop", CHECK).unwrap(),
        changed,
        "restored rows differ"
    );

    // Unprotected workloads are refused with what to do.
    env.statefulset("other", pg_env(&pg), json!({})).await;
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/other"}),
        "StatefulSet db/other is not protected by a Blueprint",
    )
    .await;

    // A Profile whose Secret is missing fails the action, naming both.
    coffer_api(&env.client, "Profile", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                "metadata": {"name": "broken"},
                "spec": {"type": "file", "path": env.location.path(),
                         "encryption": {"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
                                        "identity": {"secret": {"name": "nope", "key": "identity"}}}}})),
        )
        .await
        .unwrap();
    env.expect_failure(
        json!({"action": "backup", "workload": "statefulset/pg", "profile": "broken"}),
        "Secret coffer/nope (for Profile coffer/broken spec.encryption.identity) not found",
    )
    .await;

    // Deleting a restore point through an ActionSet removes its objects and its resource.
    let out = env.cli(&["delete", &rp, "-n", "db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.get("RestorePoint", &rp).await.is_none());
    assert!(env.objects_under(&prefix).is_empty());

    // Events and metrics say what happened.
    let events = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "db",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
    )
    .list(&ListParams::default())
    .await
    .unwrap();
    let reasons: Vec<String> = events
        .items
        .iter()
        .filter_map(|e| e.data["reason"].as_str().map(String::from))
        .collect();
    assert!(reasons.iter().any(|r| r == "Completed"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Failed"), "{reasons:?}");
    let m = metrics(port);
    assert!(
        m.contains("coffer_actions_total{action=\"backup\",result=\"completed\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("coffer_actions_total{action=\"restore\",result=\"completed\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("coffer_actions_total{action=\"backup\",result=\"failed\"} 2"),
        "{m}"
    );
    assert!(m.contains("coffer_leader 1"), "{m}");
    env.assert_daemon_rbac();
}
