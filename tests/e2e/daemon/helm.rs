//! A Helm chart's application with no coffer annotation: Bitnami PostgreSQL as the chart
//! renders it (tests/fixtures/helm), protected by a BlueprintBinding on the chart's labels;
//! the built-in postgres-bitnami Blueprint finds the password through the chart's
//! POSTGRES_POSTGRES_PASSWORD_FILE and Secret volume.

use crate::env::*;

const TABLE: &str = "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int);
INSERT INTO orders SELECT g, 'item ' || md5(g::text), g % 13 FROM generate_series(1, 3000) g;";
const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x";

#[tokio::test]
async fn a_helm_chart_postgres_backs_up_and_restores_with_only_a_binding() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    let ns = "team-shop";
    env.opted_in_namespace(ns).await;

    // The superuser's password exists only in the chart's Secret (and the server).
    let password = format!("pw-{}", coffer_tests::random_hex(8));
    let pg = Postgres::start(Some(&password)).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", TABLE).unwrap();
    let original = pg.psql("shop", CHECK).unwrap();

    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/helm/bitnami-postgresql-16.7.yaml"),
    )
    .unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&fixture) {
        let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
        v["metadata"]["namespace"] = json!(ns);
        match v["kind"].as_str().unwrap() {
            "Secret" => {
                v.as_object_mut().unwrap().remove("data");
                v["stringData"] = json!({"postgres-password": password,
                                         "password": "the-app-users-password"});
            }
            "StatefulSet" => {
                let pod = &mut v["spec"]["template"]["spec"];
                pod["nodeName"] = json!(coffer_tests::kube_real::NODE);
                let env = pod["containers"][0]["env"].as_array_mut().unwrap();
                for (k, val) in pg_env(&pg) {
                    // This machine's PostgreSQL; the chart's own variables stay as rendered.
                    if k != "PGUSER" {
                        env.push(json!({"name": k, "value": val}));
                    }
                }
            }
            _ => {}
        }
        docs.push(serde_yaml_ng::to_string(&v).unwrap());
    }
    kube.apply(&docs.join("---\n")).await;
    kube.pod_running(ns, "shop-postgresql-0").await;
    let sts = apps(&env.client, ns).get("shop-postgresql").await.unwrap();
    assert!(
        sts.metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.contains("coffer.dev")),
        "the chart's StatefulSet carries no coffer annotation"
    );

    let binding = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/helm-binding.yaml"),
    )
    .unwrap();
    kube.apply(&binding).await;
    let _daemon = env.daemon("coffer-a", coffer_tests::free_port());

    let sets = coffer_api(&env.client, "ActionSet", ns);
    let run = async |spec: Value| {
        let name = env.action_set_in(ns, spec).await;
        let status = env.finished_in(ns, &name).await;
        (name, status)
    };
    let (name, status) =
        run(json!({"action": "backup", "workload": "statefulset/shop-postgresql"})).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    assert_eq!(status["blueprint"], "postgres-bitnami");
    let rp = status["restorePoint"].as_str().unwrap().to_string();
    let set = sets.get(&name).await.unwrap();
    assert!(
        !serde_json::to_string(&set).unwrap().contains(&password),
        "the password leaked into the ActionSet"
    );

    pg.psql(
        "shop",
        "DELETE FROM orders WHERE id % 3 = 0; UPDATE orders SET qty = -1",
    )
    .unwrap();
    assert_ne!(pg.psql("shop", CHECK).unwrap(), original);
    let (_, status) = run(
        json!({"action": "restore", "workload": "statefulset/shop-postgresql",
                                 "restorePoint": rp}),
    )
    .await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    assert_eq!(
        pg.psql("shop", CHECK).unwrap(),
        original,
        "restored rows differ"
    );
    env.assert_daemon_rbac();
}
