//! Applications, not only data: a backup captures the workload's Kubernetes resources
//! (encrypted with the data); a restore recreates them in a new namespace — the
//! StatefulSet's pod Running through the controller manager and kwok — and restores the
//! rows into the copy, without touching the original; a namespace that did not allow it,
//! or that holds a Secret the copy would mount, gets nothing; a deleted workload comes
//! back in place with its rows.

use crate::env::*;
use coffer_tests::k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};

const TABLE: &str = "CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || md5(g::text) FROM generate_series(1, 2000) g;";
const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM items x";

#[tokio::test]
async fn an_application_restores_into_a_new_namespace_with_its_resources_and_rows() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    // Two servers with one password: the original's, and the one Service `pg` stands for
    // in the copy's namespace.
    let original = Postgres::start(Some("app-pw")).unwrap();
    let copy = Postgres::start(Some("app-pw")).unwrap();
    original.psql("postgres", "CREATE DATABASE shop").unwrap();
    original.psql("shop", TABLE).unwrap();
    let rows = original.psql("shop", CHECK).unwrap();
    let net = |pg: &Postgres| {
        vec![
            ("PGHOST", "127.0.0.1".to_string()),
            ("PGPORT", pg.port.to_string()),
        ]
    };
    kube.network("db", &net(&original));
    kube.network("db-copy", &net(&copy));

    kube.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: pg-auth, namespace: db}}
stringData: {{password: app-pw}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: pg-conn, namespace: db}}
data: {{PGHOST: pg, PGUSER: postgres, PATH: "{PGBIN}:/usr/bin:/bin"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: shop-settings, namespace: db}}
data: {{currency: EUR}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: shop-db, namespace: db}}
---
apiVersion: v1
kind: Service
metadata: {{name: pg, namespace: db, labels: {{app: pg}}}}
spec:
  selector: {{app: pg}}
  ports: [{{name: pg, port: 5432}}]
---
apiVersion: v1
kind: Service
metadata: {{name: unrelated, namespace: db}}
spec:
  selector: {{app: other}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: pg
  namespace: db
  labels: {{app: pg}}
  annotations: {{coffer.dev/blueprint: postgres-logical, secret.coffer.dev/password: pg-auth/password}}
spec:
  replicas: 1
  serviceName: pg
  selector: {{matchLabels: {{app: pg}}}}
  template:
    metadata: {{labels: {{app: pg}}}}
    spec:
      nodeName: {node}
      serviceAccountName: shop-db
      containers:
        - name: postgres
          image: postgres:15
          env:
            - {{name: PGHOST, valueFrom: {{configMapKeyRef: {{name: pg-conn, key: PGHOST}}}}}}
            - {{name: PGUSER, valueFrom: {{configMapKeyRef: {{name: pg-conn, key: PGUSER}}}}}}
            - {{name: PATH, valueFrom: {{configMapKeyRef: {{name: pg-conn, key: PATH}}}}}}
            - {{name: POSTGRES_PASSWORD, valueFrom: {{secretKeyRef: {{name: pg-auth, key: password}}}}}}
          volumeMounts: [{{name: settings, mountPath: /etc/shop}}]
      volumes:
        - {{name: settings, configMap: {{name: shop-settings}}}}
"#,
        node = coffer_tests::kube_real::NODE
    ))
    .await;
    kube.pod_running("db", "pg-0").await;
    let _daemon = env.daemon("coffer-a", coffer_tests::free_port());

    // The backup records the application beside the data.
    let name = env
        .action_set(json!({"action": "backup", "workload": "statefulset/pg"}))
        .await;
    let status = env.finished(&name).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    let rp = status["restorePoint"].as_str().unwrap().to_string();
    let rp_obj = env.get("RestorePoint", &rp).await.unwrap();
    let app = &rp_obj.data["spec"]["application"];
    assert_eq!(
        app["resources"],
        json!([
            "ServiceAccount/shop-db",
            "Secret/pg-auth",
            "ConfigMap/pg-conn",
            "ConfigMap/shop-settings",
            "Service/pg",
            "StatefulSet/pg"
        ]),
        "{app:#}"
    );
    let prefix = rp_obj.data["spec"]["prefix"].as_str().unwrap().to_string();
    let stored: Vec<PathBuf> = env
        .objects_under(&prefix)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("coffer-application.json"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].to_string_lossy().ends_with(".zst.age"));
    let raw = std::fs::read(&stored[0]).unwrap();
    assert!(
        !raw.windows(6).any(|w| w == b"app-pw") && !raw.windows(8).any(|w| w == b"YXBwLXB3"),
        "the captured Secret is stored in the clear"
    );

    // A namespace that did not allow restores from db gets nothing.
    env.opted_in_namespace("db-copy").await;
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "statefulset/pg",
            "--from",
            &rp,
            "-n",
            "db",
            "--to-namespace",
            "db-copy",
        ];
        args.extend_from_slice(extra);
        let out = env.cli(&args);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, said) = restore(&[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("does not accept restores from namespace db")
            && said.contains("coffer.dev/restore-from=db"),
        "{said}"
    );
    let copy_sts = apps(&env.client, "db-copy");
    assert!(copy_sts.get_opt("pg").await.unwrap().is_none());

    // Allowed, but the namespace holds a Secret of the name the copy would mount: refused,
    // nothing created.
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: db-copy\n  annotations: {coffer.dev/restore-from: \"db,staging-*\"}\n")
        .await;
    kube.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: pg-auth, namespace: db-copy}\nstringData: {password: the-copys-own}\n")
        .await;
    let (ok, said) = restore(&[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("Secret/pg-auth") && said.contains("nothing was created"),
        "{said}"
    );
    assert!(copy_sts.get_opt("pg").await.unwrap().is_none());
    assert!(
        Api::<ConfigMap>::namespaced(env.client.clone(), "db-copy")
            .get_opt("shop-settings")
            .await
            .unwrap()
            .is_none()
    );
    Api::<Secret>::namespaced(env.client.clone(), "db-copy")
        .delete("pg-auth", &DeleteParams::default())
        .await
        .unwrap();

    // Now it goes: resources recreated, pod Running, rows in the copy's server.
    original
        .psql("shop", "UPDATE items SET name = 'changed after the backup'")
        .unwrap();
    let (ok, said) = restore(&[]);
    assert!(ok, "{said}\n{}", env.daemon_logs());
    let sts = copy_sts.get("pg").await.unwrap();
    assert_eq!(
        sts.metadata.labels.as_ref().unwrap()["coffer.dev/restored-from"],
        "db"
    );
    kube.pod_running("db-copy", "pg-0").await;
    let svc = Api::<Service>::namespaced(env.client.clone(), "db-copy")
        .get("pg")
        .await
        .unwrap();
    let old_svc = Api::<Service>::namespaced(env.client.clone(), "db")
        .get("pg")
        .await
        .unwrap();
    let ip = |s: &Service| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    assert_ne!(
        ip(&svc),
        ip(&old_svc),
        "the copy's Service got its own address"
    );
    assert!(
        Api::<Service>::namespaced(env.client.clone(), "db-copy")
            .get_opt("unrelated")
            .await
            .unwrap()
            .is_none(),
        "a Service that does not select the workload came along"
    );
    let settings = Api::<ConfigMap>::namespaced(env.client.clone(), "db-copy")
        .get("shop-settings")
        .await
        .unwrap();
    assert_eq!(settings.data.unwrap()["currency"], "EUR");
    let secret = Api::<Secret>::namespaced(env.client.clone(), "db-copy")
        .get("pg-auth")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"app-pw");
    assert_eq!(
        copy.psql("shop", CHECK).unwrap(),
        rows,
        "the copy's rows differ"
    );
    assert_ne!(
        original.psql("shop", CHECK).unwrap(),
        rows,
        "the original was touched"
    );

    // Again: what exists (made by the first restore) is kept, the data restored again.
    copy.psql("shop", "DELETE FROM items").unwrap();
    let (ok, said) = restore(&[]);
    assert!(ok, "{said}");
    assert_eq!(copy.psql("shop", CHECK).unwrap(), rows);

    // The original, deleted with a ConfigMap it mounts: restored in place, app and rows.
    apps(&env.client, "db")
        .delete("pg", &DeleteParams::default())
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), "db")
        .delete("shop-settings", &DeleteParams::default())
        .await
        .unwrap();
    coffer_tests::kube_real::eventually(60, "the StatefulSet's pod goes", || async {
        Api::<coffer_tests::k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), "db")
            .get_opt("pg-0")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    let out = env.cli(&["restore", "statefulset/pg", "--from", &rp, "-n", "db"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        env.daemon_logs()
    );
    assert!(
        apps(&env.client, "db")
            .get_opt("pg")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<ConfigMap>::namespaced(env.client.clone(), "db")
            .get_opt("shop-settings")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        original.psql("shop", CHECK).unwrap(),
        rows,
        "the original's rows"
    );
    env.assert_daemon_rbac();
}
