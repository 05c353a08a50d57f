//! Policies on the real control plane: two daemons on a clock the test moves, the leader
//! killed as a tick starts; exactly one ActionSet for that tick whichever replica made it,
//! the Policy's status, Events, metrics and `coffer get compliance --kubeconfig` agreeing
//! with what ran; retention deleting the oldest sealed restore point and its objects; a
//! tenant's forged restore point and forged Policy ActionSet counting for nothing;
//! `coffer restore --at` choosing among what the Policy kept.

use crate::env::*;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn compact(t: Timestamp) -> String {
    t.strftime("%Y%m%d-%H%M%S").to_string()
}

async fn policy(env: &Env) -> Value {
    env.get_in("coffer", "Policy", "gold")
        .await
        .map(|o| o.data)
        .unwrap_or(Value::Null)
}

/// Wait until the Policy's status satisfies `done`.
async fn wait_policy(env: &Env, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = policy(env).await;
        if done(&p["status"]) {
            return p["status"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "Policy gold: {what} did not happen; status: {:#}\n{}",
            p["status"],
            env.daemon_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The run the Policy recorded for `tick`, once it has one.
async fn run_of(env: &Env, tick: Timestamp) -> Value {
    let t = tick.to_string();
    let st = wait_policy(env, &format!("a run recorded for {t}"), |s| {
        s["runningTick"].is_null()
            && s["runs"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["tick"] == t.as_str()))
    })
    .await;
    st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["tick"] == t.as_str())
        .unwrap()
        .clone()
}

async fn tick_sets(env: &Env, tick: Timestamp) -> Vec<DynamicObject> {
    coffer_api(&env.client, "ActionSet", "db")
        .list(&ListParams::default().labels(&format!(
            "coffer.dev/policy=gold,coffer.dev/tick={}",
            compact(tick)
        )))
        .await
        .unwrap()
        .items
}

fn set_clock(clock: &Path, t: Timestamp) {
    std::fs::write(clock, t.to_string()).unwrap();
}

#[tokio::test]
async fn a_leader_killed_at_a_tick_makes_exactly_one_action_set_and_status_agrees_with_what_ran() {
    let env = Env::start().await;
    let clock = env.work.path().join("clock");
    // The first tick: the next whole hour after the Policy exists (the API server stamps
    // its creation with the real time).
    let hour = SignedDuration::from_hours(1);
    let now = Timestamp::now();
    let first = Timestamp::from_second(now.as_second() - now.as_second() % 3600).unwrap() + hour;
    set_clock(&clock, now);
    coffer_api(&env.client, "Blueprint", "coffer")
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Blueprint",
                "metadata": {"name": "slow"},
                "spec": {"plugin": {"path": coffer_tests::test_plugin("hostile")},
                         "grants": {"exec": ["sleep **"], "location": ["read", "write", "delete"]},
                         "params": {"backup": {"mode": "slow-ok", "bytes": 2}}}}),
            ),
        )
        .await
        .unwrap();
    env.statefulset("app", vec![], json!({"coffer.dev/blueprint": "slow"}))
        .await;
    env.statefulset("other", vec![], json!({"coffer.dev/blueprint": "slow"}))
        .await;
    let envs = [("COFFER_TEST_CLOCK", clock.as_path())];
    let (port_a, port_b) = (coffer_tests::free_port(), coffer_tests::free_port());
    let mut a = env.daemon_env("coffer-a", port_a, &[], &envs);
    coffer_tests::kube_real::eventually(30, "coffer-a leads", || async {
        metrics(port_a).contains("coffer_leader 1")
    })
    .await;
    let _b = env.daemon_env("coffer-b", port_b, &[], &envs);
    coffer_api(&env.client, "Policy", "coffer")
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "Policy",
                "metadata": {"name": "gold"},
                "spec": {"frequency": "@hourly",
                         "selector": {"kinds": ["StatefulSet"], "namespaces": ["db"],
                                      "labels": {"app": "app"}},
                         "retention": {"hourly": 2}}}),
            ),
        )
        .await
        .unwrap();
    let next = first.to_string();
    wait_policy(&env, "the leader sees the Policy", |s| {
        s["nextTick"] == next.as_str()
    })
    .await;

    // The tick falls; the leader records it running and is killed at once.
    set_clock(&clock, first + SignedDuration::from_secs(30));
    wait_policy(&env, "the first tick starts", |s| {
        s["runningTick"] == next.as_str()
    })
    .await;
    a.kill();
    let run = run_of(&env, first).await;
    let sets = tick_sets(&env, first).await;
    assert_eq!(
        sets.len(),
        1,
        "one ActionSet for the tick, whichever leader made it: {:#?}\n{}",
        sets.iter().map(|s| &s.metadata.name).collect::<Vec<_>>(),
        env.daemon_logs()
    );
    let name = sets[0].metadata.name.clone().unwrap();
    assert_eq!(
        name,
        format!("policy-gold-statefulset-app-{}", compact(first))
    );
    let phase = env.finished(&name).await["phase"].clone();
    assert_eq!(
        run["result"], phase,
        "the Policy's record of the tick is what its ActionSet did: {run:#}"
    );

    // The new leader runs the next ticks; retention keeps the newest 2.
    let mut made = Vec::new();
    for i in 1..=3 {
        let t = first + hour * i;
        set_clock(&clock, t + SignedDuration::from_secs(30));
        let run = run_of(&env, t).await;
        assert_eq!(run["result"], "Completed", "{run:#}\n{}", env.daemon_logs());
        let sets = tick_sets(&env, t).await;
        let backup = sets
            .iter()
            .find(|s| s.metadata.name.as_deref().unwrap().starts_with("policy-"))
            .unwrap();
        assert_eq!(backup.data["status"]["runner"], "coffer-b");
        made.push(
            backup.data["status"]["restorePoint"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        if i == 1 {
            // A tenant forges a newer restore point of the Policy (no seal) and an ActionSet
            // that claims it: neither counts.
            let mut forged = coffer_api(&env.client, "RestorePoint", "db")
                .get(&made[0])
                .await
                .unwrap();
            forged.metadata = Default::default();
            forged.metadata.name = Some("forged".into());
            forged.metadata.labels = Some(
                [("coffer.dev/policy".to_string(), "gold".to_string())]
                    .into_iter()
                    .collect(),
            );
            forged.metadata.annotations = Some(
                [(
                    "coffer.dev/tick".to_string(),
                    (first + hour * 10).to_string(),
                )]
                .into_iter()
                .collect(),
            );
            coffer_api(&env.client, "RestorePoint", "db")
                .create(&PostParams::default(), &forged)
                .await
                .unwrap();
            let o = coffer_api(&env.client, "ActionSet", "db")
                .create(
                    &PostParams::default(),
                    &obj(json!({"apiVersion": "coffer.dev/v1alpha1", "kind": "ActionSet",
                        "metadata": {"generateName": "forged-",
                                     "labels": {"coffer.dev/policy": "gold"},
                                     "annotations": {"coffer.dev/tick": (first + hour * 11).to_string()}},
                        "spec": {"action": "backup", "workload": "statefulset/app"}})),
                )
                .await
                .unwrap();
            let st = env.finished(o.metadata.name.as_deref().unwrap()).await;
            assert_eq!(st["phase"], "Failed", "{st:#}");
            assert!(
                st["error"]
                    .as_str()
                    .unwrap()
                    .contains("only coffer's scheduler may set"),
                "{st:#}"
            );
        }
    }
    // Three made by the new leader (and perhaps one by the first tick): the oldest of them
    // went to retention, through a delete ActionSet, objects and all.
    let rps: Vec<String> = coffer_api(&env.client, "RestorePoint", "db")
        .list(&ListParams::default().labels("coffer.dev/policy=gold"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert!(
        !rps.contains(&made[0]),
        "retention kept {}: {rps:?}",
        made[0]
    );
    for kept in &made[1..] {
        assert!(rps.contains(kept), "retention deleted {kept}: {rps:?}");
    }
    assert!(
        rps.contains(&"forged".to_string()),
        "retention acted on a restore point the Policy did not make"
    );
    let deletion = env.finished(&format!("retention-{}", made[0])).await;
    assert_eq!(deletion["phase"], "Completed", "{deletion:#}");
    assert!(
        env.objects_under(&format!("restorepoints/db/statefulset-app/{}", made[0]))
            .is_empty(),
        "the deleted restore point's objects stayed"
    );

    // Status, the CLI, metrics and Events agree.
    let st = wait_policy(&env, "compliance judged after the last tick", |s| {
        s["compliance"][0]["newestRestorePoint"] == made[2].as_str()
    })
    .await;
    let row = &st["compliance"][0];
    assert_eq!(row["workload"], "db/statefulset/app");
    assert_eq!(row["state"], "Compliant", "{st:#}");
    let out = env.cli(&["get", "compliance", "-o", "json"]);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(rows.contains(row), "{rows:#?} lacks {row:#}");
    assert!(
        rows.iter()
            .any(|r| r["workload"] == "db/statefulset/other" && r["state"] == "Unmanaged"),
        "{rows:#?}"
    );
    let m = metrics(port_b);
    assert!(
        m.contains("coffer_policy_runs_total{policy=\"gold\",result=\"Completed\"}"),
        "{m}"
    );
    assert!(
        m.contains(
            "coffer_compliance{policy=\"gold\",workload=\"db/statefulset/app\",state=\"Compliant\"} 1"
        ),
        "{m}"
    );
    let events = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "coffer",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
    )
    .list(&ListParams::default())
    .await
    .unwrap();
    assert!(
        events.items.iter().any(|e| e.data["regarding"]["kind"] == "Policy"
            && e.data["reason"] == "TickCompleted"),
        "no TickCompleted Event on the Policy"
    );
    let described = env.cli(&["describe", "policy", "gold"]);
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(
        text.contains("db/statefulset/app  Compliant"),
        "{text}{}",
        String::from_utf8_lossy(&described.stderr)
    );

    // Restore to a point in time: the newest restore point taken at or before it.
    let restored = env.cli(&[
        "restore",
        "statefulset/app",
        "-n",
        "db",
        "--at",
        &Timestamp::now().to_string(),
    ]);
    let said = String::from_utf8_lossy(&restored.stderr);
    assert!(
        said.contains(&format!("restoring RestorePoint {} ", made[2])),
        "{said}"
    );
    let too_early = env.cli(&[
        "restore",
        "statefulset/app",
        "-n",
        "db",
        "--at",
        "2000-01-01T00:00:00Z",
    ]);
    let said = String::from_utf8_lossy(&too_early.stderr);
    assert!(
        !too_early.status.success()
            && said.contains("StatefulSet db/app has no RestorePoint taken at or before"),
        "{said}"
    );
    env.assert_daemon_rbac();
}
