//! The Kubernetes API simulator (tests/src/kube_sim.rs) driven by kube-rs through a
//! kubeconfig, as coffer's kube backend will: the API semantics coffer relies on must hold.

use coffer_tests::k8s_openapi::api::core::v1::ConfigMap;
use coffer_tests::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use coffer_tests::kube::config::{KubeConfigOptions, Kubeconfig};
use coffer_tests::kube::{Client, Config};
use coffer_tests::kube_sim::KubeSim;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::BTreeMap;

async fn client(sim: &KubeSim) -> Client {
    let kc = Kubeconfig::read_from(&sim.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    c
}

fn api_error_code(e: &coffer_tests::kube::Error) -> Option<u16> {
    match e {
        coffer_tests::kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn typed_resources_crud_conflicts_selectors_and_patches() {
    let sim = KubeSim::start();
    let c = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "db");
    let pp = PostParams::default();

    let a = api
        .create(
            &pp,
            &cm("a", &[("app", "pg"), ("tier", "db")], &[("k", "1")]),
        )
        .await
        .unwrap();
    api.create(&pp, &cm("b", &[("app", "pg")], &[]))
        .await
        .unwrap();
    api.create(&pp, &cm("c", &[("app", "redis")], &[]))
        .await
        .unwrap();
    let rv_a = a.metadata.resource_version.clone().unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    // Names are unique per namespace; another namespace is another place.
    let dup = api.create(&pp, &cm("a", &[], &[])).await.unwrap_err();
    assert_eq!(api_error_code(&dup), Some(409));
    Api::<ConfigMap>::namespaced(c.clone(), "other")
        .create(&pp, &cm("a", &[], &[]))
        .await
        .unwrap();

    let names = |l: coffer_tests::kube::api::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=pg"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=pg,tier"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app!=pg"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        Api::<ConfigMap>::all(c.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );

    // Replace with the current resourceVersion works; with a stale one it is a conflict.
    let mut edited = api.get("a").await.unwrap();
    edited.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let replaced = api.replace("a", &pp, &edited).await.unwrap();
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(rv_a.as_str())
    );
    let stale = api.replace("a", &pp, &edited).await.unwrap_err();
    assert_eq!(api_error_code(&stale), Some(409));

    // Merge patch: null removes, objects merge.
    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": null, "n": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap(),
        BTreeMap::from([("n".to_string(), "3".to_string())])
    );

    // Server-side apply creates, then updates.
    let ssa = PatchParams::apply("coffer").force();
    let applied = api
        .patch("d", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"x": "1"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["x"], "1");
    let applied = api
        .patch("d", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"x": "2"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["x"], "2");

    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error_code(&api.get("b").await.unwrap_err()), Some(404));
}

#[tokio::test]
async fn custom_resources_and_the_status_subresource() {
    let sim = KubeSim::start();
    let c = client(&sim).await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "coffer.dev",
        "v1alpha1",
        "ActionSet",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(c, "db", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
        "metadata": {"name": "backup-pg-1"},
        "spec": {"action": "backup", "workload": "statefulset/pg"},
        "status": {"phase": "Ignored"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        sim.object("coffer.dev", "actionsets", "db", "backup-pg-1")
            .is_some()
    );

    // The status subresource changes status only.
    let s = api
        .patch_status(
            "backup-pg-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"action": "delete"}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Running");
    assert_eq!(s.data["spec"]["action"], "backup");
    // The main resource never changes status, and counts spec changes in generation.
    let m = api
        .patch(
            "backup-pg-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"params": {"x": 1}}, "status": {"phase": "Completed"}})),
        )
        .await
        .unwrap();
    assert_eq!(m.data["status"]["phase"], "Running");
    assert_eq!(m.data["spec"]["params"]["x"], 1);
    assert_eq!(m.metadata.generation, Some(2));
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_follows_changes() {
    let sim = KubeSim::start();
    let c = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(c, "db");
    let pp = PostParams::default();
    api.create(&pp, &cm("before", &[("app", "pg")], &[]))
        .await
        .unwrap();
    api.create(&pp, &cm("other", &[("app", "redis")], &[]))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // From the list's resourceVersion: only what happens after, filtered by the selector.
    let stream = api
        .watch(&WatchParams::default().labels("app=pg").timeout(5), &rv)
        .await
        .unwrap();
    let events = tokio::spawn(async move {
        stream
            .take(3)
            .map_ok(|e| match e {
                WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap()),
                WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.unwrap()),
                WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
                other => format!("{other:?}"),
            })
            .try_collect::<Vec<String>>()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    api.create(&pp, &cm("after", &[("app", "pg")], &[]))
        .await
        .unwrap();
    api.create(&pp, &cm("ignored", &[("app", "redis")], &[]))
        .await
        .unwrap();
    api.patch(
        "after",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    api.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), events)
        .await
        .expect("the watch delivered the events")
        .unwrap()
        .unwrap();
    assert_eq!(got, ["ADDED after", "MODIFIED after", "DELETED before"]);

    // From "0": the current objects first.
    let initial: Vec<String> = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .try_filter_map(|e| async move {
            Ok(match e {
                WatchEvent::Added(o) => o.metadata.name,
                _ => None,
            })
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(initial, ["after", "ignored", "other"]);
}

/// The `kube` capability of a plugin, against the simulator through kube-rs: list, scale
/// (previous count back), wait-for, server-side apply, and a kind the manifest does not
/// declare (denied, never sent to the cluster).
#[tokio::test]
async fn the_kube_capability_drives_a_cluster() {
    use coffer::cap::kube::client::ClusterKube;
    use coffer::harness::{self, Case, ScriptedExec};
    use std::sync::Arc;

    let sim = KubeSim::start();
    let c = client(&sim).await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
    let sts: Api<DynamicObject> = Api::namespaced_with(c.clone(), "db", &ar);
    let pg: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "pg", "labels": {"app": "pg"}},
        "spec": {"replicas": 3}
    }))
    .unwrap();
    sts.create(&PostParams::default(), &pg).await.unwrap();

    let runtime = coffer::engine::Engine::new(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache"),
    )
    .unwrap();
    let plugin = coffer::plugin::PluginBytes::new(
        "hostile".into(),
        std::fs::read(coffer_tests::test_plugin("hostile")).unwrap(),
    );
    let manifest = coffer::plugin::inspect(&plugin).unwrap().manifest;
    let case: Case =
        serde_yaml_ng::from_str("{name: kube, action: backup, params: {mode: kube}}").unwrap();
    let kube = Arc::new(ClusterKube {
        client: c.clone(),
        default_namespace: "db".into(),
    });
    let run = harness::run_action(
        &runtime,
        &plugin,
        &manifest,
        &case,
        None,
        Arc::new(ScriptedExec::new(vec![])),
        kube,
    )
    .await
    .unwrap();
    let out = run.result.expect("the kube mode succeeds");
    let outputs: BTreeMap<String, String> = out.outputs.into_iter().collect();
    assert_eq!(outputs["listed"], "1");
    assert_eq!(outputs["previous"], "3");
    assert_eq!(outputs["scaledFrom"], "0");
    assert!(
        outputs["denied"].contains("kube get on Secret"),
        "{}",
        outputs["denied"]
    );
    // The cluster saw it: replicas back to 3, the marker applied.
    assert_eq!(sts.get("pg").await.unwrap().data["spec"]["replicas"], 3);
    let cm: Api<ConfigMap> = Api::namespaced(c, "db");
    assert_eq!(
        cm.get("coffer-marker").await.unwrap().data.unwrap()["previous"],
        "3"
    );
    // Every call is on the audit trail, the denied one included.
    let trail = harness::trace_lines(&run.scope).join("\n");
    for want in [
        "kube.list",
        "kube.scale",
        "kube.wait-for",
        "kube.apply",
        "kube.get",
    ] {
        assert!(trail.contains(want), "{want} missing:\n{trail}");
    }
}

fn statefulset(name: &str, replicas: u32, env: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "sim", "env": env}]}}}
    }))
    .unwrap()
}

fn apps_api(c: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
    Api::namespaced_with(c.clone(), ns, &ar)
}

fn spawn_spec(argv: &[&str], stdin: bool) -> coffer::cap::exec::SpawnSpec {
    coffer::cap::exec::SpawnSpec {
        workload: "pg".into(),
        container: None,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        plugin_argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        secret_env: vec![],
        stdin,
        stderr_tail: 1024,
    }
}

#[tokio::test]
async fn pod_exec_streams_through_the_websocket_protocol() {
    use coffer::cap::exec::{ExecBackend, PodExec, PodTarget};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = KubeSim::start();
    let c = client(&sim).await;
    let sts = apps_api(&c, "db");
    sts.create(
        &PostParams::default(),
        &statefulset("pg", 2, json!([{"name": "FOO", "value": "from-the-pod"}])),
    )
    .await
    .unwrap();
    let pods: Api<coffer_tests::k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.clone(), "db");
    let names: Vec<String> = pods
        .list(&ListParams::default().labels("app=pg"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["pg-0", "pg-1"],
        "the simulated StatefulSet controller makes pods"
    );
    let exec = PodExec::new(
        c.clone(),
        PodTarget {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            namespace: "db".into(),
            name: "pg".into(),
            container: None,
        },
        "test".into(),
    );
    assert_eq!(
        exec.resolve_pod().await.unwrap().metadata.name.as_deref(),
        Some("pg-0")
    );

    // 3 MiB through stdin and back, env from the pod spec, a secret through the preamble,
    // stderr and the real exit code.
    let mut spec = spawn_spec(
        &[
            "sh",
            "-c",
            "cat; printf '%s/%s/%s' \"$FOO\" \"$SECRET\" \"$PLAIN\"; echo oops >&2; exit 3",
        ],
        true,
    );
    spec.secret_env = vec![("SECRET".into(), std::sync::Arc::new("s3 cr'et".into()))];
    spec.env = vec![("PLAIN".into(), "p".into())];
    let mut p = exec.spawn(spec).await.unwrap();
    let mut stdin = p.take_stdin().unwrap();
    let mut stdout = p.take_stdout().unwrap();
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let input = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
        stdin.shutdown().await.unwrap();
    });
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    let exit = p.wait().await.unwrap();
    assert_eq!(exit.code, Some(3));
    assert!(String::from_utf8_lossy(&exit.stderr).contains("oops"));
    assert_eq!(out.len(), data.len() + "from-the-pod/s3 cr'et/p".len());
    assert_eq!(&out[..data.len()], &data[..], "stdin came back intact");
    assert_eq!(&out[data.len()..], b"from-the-pod/s3 cr'et/p");

    // Success, and output nobody reads does not stall the process.
    let mut p = exec
        .spawn(spawn_spec(&["sh", "-c", "head -c 200000 /dev/zero"], false))
        .await
        .unwrap();
    assert_eq!(p.wait().await.unwrap().code, Some(0));

    // A missing program, a missing container.
    let mut p = exec
        .spawn(spawn_spec(&["no-such-tool-here"], false))
        .await
        .unwrap();
    let e = p.wait().await.err().expect("a missing program fails");
    assert!(
        e.to_string()
            .contains("was not found on the PATH of container main of pod db/pg-0"),
        "{e}"
    );
    let mut spec = spawn_spec(&["true"], false);
    spec.container = Some("sidecar".into());
    let e = exec.spawn(spec).await.err().expect("no such container");
    assert!(
        e.to_string().contains("has no container") && e.to_string().contains("sidecar"),
        "{e}"
    );

    // Killing the exec stops the process in the pod.
    let mut p = exec
        .spawn(spawn_spec(&["sleep", "1234.5"], false))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    p.kill();
    drop(p);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // /proc rather than pgrep: procps is not on every machine.
        let running = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x001234.5\x00")
        });
        if !running {
            gone = true;
            break;
        }
    }
    assert!(gone, "the killed exec's process is still running");

    // No pod: scaled to zero.
    sts.patch(
        "pg",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    let e = exec
        .spawn(spawn_spec(&["true"], false))
        .await
        .err()
        .expect("no pod to exec in");
    assert!(
        e.to_string()
            .contains("StatefulSet db/pg has no Running and Ready pod"),
        "{e}"
    );
}
