//! What only a real API server checks: coffer's CRDs as the server reads them (schemas,
//! formats, strict fields), and RBAC for people (coffer-operator, coffer-viewer) and for the
//! daemon in namespaces that did not opt in.

use crate::env::*;
use coffer_tests::kube_real::RealKube;

#[tokio::test]
async fn the_crds_apply_without_warnings_and_the_server_refuses_malformed_resources() {
    let kube = RealKube::start();
    let client = kube.client().await;
    let out = std::process::Command::new(BIN)
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let yaml = String::from_utf8(out.stdout).unwrap();
    let mut kinds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let crd: Value = serde::Deserialize::deserialize(doc).unwrap();
        kinds.push(crd["spec"]["names"]["kind"].as_str().unwrap().to_string());
        // Raw, to see the server's warnings (kube's typed calls drop them).
        let req = http::Request::post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?fieldValidation=Strict",
        )
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&crd).unwrap().into())
        .unwrap();
        let resp = client.send(req).await.unwrap();
        let warnings: Vec<String> = resp
            .headers()
            .get_all("warning")
            .iter()
            .map(|w| String::from_utf8_lossy(w.as_bytes()).into_owned())
            .collect();
        assert_eq!(resp.status(), 201, "creating {}", crd["metadata"]["name"]);
        assert!(
            warnings.is_empty(),
            "the API server warned about CRD {}: {warnings:#?}",
            crd["metadata"]["name"]
        );
    }
    for want in [
        "ActionSet",
        "RestorePoint",
        "Blueprint",
        "Profile",
        "BlueprintBinding",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "no CRD for {want}: {kinds:?}"
        );
    }

    // The schema is enforced: a wrongly typed field, an unknown field, a negative count.
    // (Created with the API server's strict field validation, as `kubectl apply` does.)
    coffer_tests::kube_real::api_for(&client, &gvk("ActionSet"), Some("default")).await;
    coffer_tests::kube_real::api_for(&client, &gvk("Blueprint"), Some("default")).await;
    let create = |plural: &str, o: Value| {
        let req = http::Request::post(format!(
            "/apis/coffer.dev/v1alpha1/namespaces/default/{plural}?fieldValidation=Strict"
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&o).unwrap())
        .unwrap();
        let client = client.clone();
        async move { client.request::<Value>(req).await }
    };
    let refused = |r: Result<Value, coffer_tests::kube::Error>| match r {
        Err(coffer_tests::kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("the API server accepted a malformed resource: {other:?}"),
    };
    let (code, message) = refused(
        create(
            "actionsets",
            json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
                "metadata": {"name": "typed"},
                "spec": {"action": 5, "workload": "statefulset/pg"}}),
        )
        .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("spec.action"), "{message}");
    let (code, message) = refused(
        create(
            "actionsets",
            json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
                "metadata": {"name": "unknown"},
                "spec": {"action": "backup", "workload": "statefulset/pg", "bogus": true}}),
        )
        .await,
    );
    assert!(matches!(code, 400 | 422), "{code}: {message}");
    assert!(message.contains("bogus"), "{message}");
    let (code, message) = refused(
        create(
            "blueprints",
            json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "negative"},
                "spec": {"plugin": {"path": "/x.wasm"}, "limits": {"handles": -1}}}),
        )
        .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("handles"), "{message}");
    // A well-formed one is accepted, so the refusals above were about the fields.
    create(
        "actionsets",
        json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
            "metadata": {"name": "fine"},
            "spec": {"action": "backup", "workload": "statefulset/pg"}}),
    )
    .await
    .expect("a well-formed ActionSet");
}

fn gvk(kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk("coffer.dev", "v1alpha1", kind)
}

#[tokio::test]
async fn people_act_only_with_the_shipped_roles_and_the_daemon_only_in_opted_in_namespaces() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    let pg = Postgres::start(Some("pod-secret-pw")).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
    )
    .unwrap();
    for ns in ["db", "shop"] {
        env.namespace(ns).await;
        kube.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: pg-auth, namespace: {ns}}}\nstringData: {{password: pod-secret-pw}}\n"
        ))
        .await;
        env.statefulset_in(
            ns,
            "pg",
            pg_env(&pg),
            json!({"coffer.dev/blueprint": "postgres-logical",
                   "secret.coffer.dev/password": "pg-auth/password"}),
        )
        .await;
    }
    let _daemon = env.daemon("coffer-a", coffer_tests::free_port());
    let alice = &kube.alice_kubeconfig;
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Alice, with no role, may neither back up nor look.
    let out = env.cli_as(alice, &["backup", "statefulset/pg", "-n", "db"]);
    assert!(!out.status.success(), "alice backed up without a role");
    let said = text(&out);
    for want in [
        "creating an ActionSet in namespace db",
        "the cluster refused",
        "ClusterRole coffer-operator",
        "-n db",
    ] {
        assert!(said.contains(want), "wanted {want:?} in: {said}");
    }
    let out = env.cli_as(alice, &["get", "restorepoints", "-n", "db"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("ClusterRole coffer-viewer"),
        "{}",
        text(&out)
    );
    let sets = coffer_api(&env.client, "ActionSet", "db")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(sets.items.is_empty(), "a refused backup left an ActionSet");

    // With coffer-operator in db she backs up there, and only there.
    kube.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: alice, namespace: db}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: coffer-operator}\nsubjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]\n",
    )
    .await;
    let out = env.cli_as(alice, &["backup", "statefulset/pg", "-n", "db"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        env.daemon_logs()
    );
    let rp = text(&out)
        .split("RestorePoint ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the CLI names the restore point")
        .to_string();
    assert!(env.get("RestorePoint", &rp).await.is_some());
    let out = env.cli_as(alice, &["get", "restorepoints", "-n", "db"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&rp), "{}", text(&out));
    let out = env.cli_as(alice, &["backup", "statefulset/pg", "-n", "shop"]);
    assert!(!out.status.success(), "coffer-operator in db reached shop");
    assert!(text(&out).contains("-n shop"), "{}", text(&out));
    // Her role reaches neither the workload's Secrets nor exec: the daemon does the work.
    assert!(
        kube.refused("alice").len() >= 3,
        "the audit log records alice's refusals"
    );
    env.assert_daemon_rbac();

    // Namespace shop never opted in: the daemon may not act there, and says how to allow it.
    let name = env
        .action_set_in(
            "shop",
            json!({"action": "backup", "workload": "statefulset/pg"}),
        )
        .await;
    let status = env.finished_in("shop", &name).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    let error = status["error"].as_str().unwrap_or_default();
    for want in [
        "namespace shop",
        "coffer-namespace",
        "deploy/examples/namespace.yaml",
    ] {
        assert!(error.contains(want), "wanted {want:?} in: {error}");
    }
    let daemon = "system:serviceaccount:coffer:coffer";
    let refused = kube.refused(daemon);
    assert!(
        !refused.is_empty()
            && refused
                .iter()
                .all(|r| r["objectRef"]["namespace"] == "shop"),
        "the API server refused the daemon only in shop: {refused:#?}"
    );
    assert!(
        coffer_api(&env.client, "RestorePoint", "shop")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a refused backup recorded a RestorePoint"
    );
}

#[tokio::test]
async fn the_daemon_validates_profiles_and_an_action_on_a_failed_one_fails_fast() {
    let env = Env::start().await;
    let profiles = coffer_api(&env.client, "Profile", "coffer");
    let validation = |name: &'static str| {
        let profiles = profiles.clone();
        async move { profiles.get(name).await.unwrap().data["status"]["validation"].clone() }
    };
    // A Profile whose age identity is in a Secret that does not exist.
    let spec = |secret: &str| {
        json!({"type": "file", "path": env.location.path(),
               "encryption": {"recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
                              "identity": {"secret": {"name": secret, "key": "identity"}}}})
    };
    profiles
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                "metadata": {"name": "keyless"}, "spec": spec("no-such-secret")}),
            ),
        )
        .await
        .unwrap();
    env.statefulset(
        "pg",
        vec![],
        json!({"coffer.dev/blueprint": "postgres-logical"}),
    )
    .await;
    let _daemon = env.daemon("coffer-a", coffer_tests::free_port());

    let deadline = Instant::now() + Duration::from_secs(60);
    let (good, bad) = loop {
        let (good, bad) = (validation("default").await, validation("keyless").await);
        if good["phase"].is_string() && bad["phase"].is_string() {
            break (good, bad);
        }
        assert!(
            Instant::now() < deadline,
            "no validation\n{}",
            env.daemon_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(good["phase"], "Valid", "{good:#}");
    let probes = good["probes"].as_array().unwrap();
    assert!(
        probes.len() >= 4 && probes.iter().all(|p| p["ok"] == true),
        "{good:#}"
    );
    assert_eq!(bad["phase"], "Failed", "{bad:#}");
    assert!(
        bad["message"].as_str().unwrap().contains("no-such-secret"),
        "{bad:#}"
    );

    // An action on it is refused before anything runs, with the reason.
    let status = env
        .expect_failure(
            json!({"action": "backup", "workload": "statefulset/pg", "profile": "keyless"}),
            "Profile keyless failed its validation",
        )
        .await;
    assert!(
        status["error"].as_str().unwrap().contains("no-such-secret"),
        "{status:#}"
    );
    assert!(env.objects_under("restorepoints").is_empty());

    // Fixed (the Profile changes to what works): checked again at once, Valid.
    let working = profiles.get("default").await.unwrap().data["spec"].clone();
    profiles
        .patch(
            "keyless",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": working})),
        )
        .await
        .unwrap();
    coffer_tests::kube_real::eventually(30, "the fixed Profile validates", || async {
        validation("keyless").await["phase"] == "Valid"
    })
    .await;
    env.assert_daemon_rbac();
}
