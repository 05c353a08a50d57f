//! Movers: a PostgreSQL StatefulSet on the built-in postgres-bitnami Blueprint backed up
//! with the daemon started with a mover image, to an S3 Profile (s3s-fs, which checks every signature). pg_dump runs in a mover
//! pod beside the subject and uploads its output to pre-signed part URLs: the API server's
//! audit log shows the mover's one exec and no dump exec in the subject; the restore
//! (through the daemon, as ever) reads what the mover wrote, decrypts and verifies it, and
//! the rows equal the originals.

use crate::env::*;
use coffer_tests::s3::{S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs};

const TABLE: &str = "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int);
INSERT INTO orders SELECT g, 'item ' || md5(g::text), g % 13 FROM generate_series(1, 20000) g;";
const CHECK: &str =
    "SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x";

/// An encrypted s3 Profile `name` on bucket `bucket` of `s3`, its keys in a Secret.
pub async fn s3_profile(env: &Env, s3: &S3sFs, name: &str, bucket: &str) -> age::x25519::Identity {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let secrets = Api::<coffer_tests::k8s_openapi::api::core::v1::Secret>::namespaced(
        env.client.clone(),
        "coffer",
    );
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-keys")},
                "stringData": {"id": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY,
                               "identity": id.to_string().expose_secret()}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let key = |k: &str| json!({"secret": {"name": format!("{name}-keys"), "key": k}});
    coffer_api(&env.client, "Profile", "coffer")
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Profile",
                "metadata": {"name": name},
                "spec": {"type": "s3", "bucket": bucket, "endpoint": s3.endpoint(),
                         "credentials": {"accessKeyId": key("id"), "secretAccessKey": key("secret")},
                         "encryption": {"recipients": [id.to_public().to_string()],
                                        "identity": key("identity")}}})),
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_mover_beside_the_workload_uploads_the_dump_and_the_restore_reads_it() {
    let env = Env::start().await;
    let Cluster::Real(kube) = &env.cluster else {
        unreachable!()
    };
    // Short names: s3s-fs keeps an upload's state in a file named after the key.
    let ns = "mv";
    env.opted_in_namespace(ns).await;
    let password = format!("pw-{}", coffer_tests::random_hex(8));
    let pg = Postgres::start(Some(&password)).unwrap();
    // The subject's IP, from beside it, reaches this machine's PostgreSQL.
    kube.network(
        ns,
        &[
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", pg.port.to_string()),
        ],
    );
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", TABLE).unwrap();
    let original = pg.psql("shop", CHECK).unwrap();
    // Shaped like the chart's container: the password in its environment.
    let mut container_env = pg_env(&pg);
    container_env.push(("POSTGRES_PASSWORD".into(), password.clone()));
    env.statefulset_in(
        ns,
        "pg",
        container_env,
        json!({"coffer.dev/blueprint": "postgres-bitnami"}),
    )
    .await;
    let s3 = S3sFs::start();
    let bucket_dir = s3.create_bucket("backups");
    s3_profile(&env, &s3, "s3", "backups").await;
    let _daemon = env.daemon_with(
        "coffer-a",
        coffer_tests::free_port(),
        &[
            "--mover-image",
            "registry.example/coffer:test",
            "--mover-threshold",
            "0",
            // kwok runs a pod's exec on this machine: the mover's coffer is this one.
            "--mover-binary",
            BIN,
        ],
    );

    let name = env
        .action_set_in(
            ns,
            json!({"action": "backup", "workload": "statefulset/pg",
                                  "profile": "s3"}),
        )
        .await;
    let status = env.finished_in(ns, &name).await;
    assert_eq!(
        status["phase"],
        "Completed",
        "{status:#}\n{}",
        env.daemon_logs()
    );
    let rp = status["restorePoint"].as_str().unwrap().to_string();

    // The dump ran in the mover: its exec is the only one that ran pg_dump, and the subject
    // pod (whose psql exec, listing the databases, the audit log does show) saw no pg_dump.
    let execs = || -> Vec<String> {
        kube.audit()
            .iter()
            .filter(|r| r["objectRef"]["subresource"] == "exec")
            .map(|r| r["requestURI"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let in_mover = |u: &String| u.contains("/pods/coffer-mover-") && u.contains("command=mover");
    let in_subject = |u: &String| u.contains("/pods/pg-0/");
    coffer_tests::kube_real::eventually(30, "the execs in the audit log", || {
        let seen = execs();
        async move {
            seen.iter().any(in_mover) && seen.iter().any(|u| in_subject(u) && u.contains("psql"))
        }
    })
    .await;
    let execs = execs();
    let mover_execs: Vec<&String> = execs.iter().filter(|u| in_mover(u)).collect();
    assert!(
        !execs.iter().any(|u| in_subject(u) && u.contains("pg_dump")),
        "pg_dump ran in the subject, through the API server:\n{execs:#?}"
    );
    assert!(
        !mover_execs.iter().any(|u| u.contains(&password)),
        "a secret went into the exec's URL"
    );
    // What the mover uploaded is encrypted at rest and complete (no parts left over).
    let stored = coffer_tests::files_under(&bucket_dir);
    assert!(
        stored.iter().any(|f| f.to_string_lossy().contains(".age")),
        "{stored:#?}"
    );
    assert!(
        coffer_tests::files_containing(&bucket_dir, b"item 1").is_empty(),
        "plaintext rows in the bucket"
    );
    // The mover pod goes with the action.
    let pods =
        Api::<coffer_tests::k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), ns);
    coffer_tests::kube_real::eventually(60, "the mover pod to be removed", || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("coffer.dev/role=mover"))
                .await
                .unwrap()
                .items
                .is_empty()
        }
    })
    .await;

    pg.psql(
        "shop",
        "DELETE FROM orders WHERE id % 3 = 0; UPDATE orders SET qty = -1",
    )
    .unwrap();
    assert_ne!(pg.psql("shop", CHECK).unwrap(), original);
    let restore = env
        .action_set_in(
            ns,
            json!({"action": "restore", "workload": "statefulset/pg",
                                  "restorePoint": rp}),
        )
        .await;
    let status = env.finished_in(ns, &restore).await;
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
