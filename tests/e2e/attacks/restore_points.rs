//! Forged restore points: a record (catalog row, or a RestorePoint resource a tenant can
//! write) that points elsewhere, lists other objects or digests, or a manifest in the
//! location that coffer did not sign. Restore and delete refuse them and touch nothing.

use super::common::{self, Fixture};
use coffer::action::ActionRequest;
use coffer::model::{Kind, Phase, RestorePoint};
use coffer_tests::files_under;

async fn a_restore_point(f: &Fixture) -> RestorePoint {
    let a = common::backup(f, "ok").await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    let name = a.status.restore_point.unwrap();
    f.coffer.restore_point(&name).unwrap()
}

/// Prepare `action` on `rp`: the error, if coffer refuses it.
async fn refused(f: &Fixture, action: &str, rp: &str) -> String {
    let req = ActionRequest {
        action: action.into(),
        restore_point: Some(rp.into()),
        workload: (action == "restore").then(|| "victim".to_string()),
        ..Default::default()
    };
    match f.coffer.prepare(req).await {
        Ok(p) => {
            let a = f.coffer.run(&p).await.unwrap();
            assert_eq!(
                a.status.phase,
                Phase::Failed,
                "{action} of a forged {rp} ran: {a:?}"
            );
            a.status.error.unwrap_or_default()
        }
        Err(e) => format!("{e:#}"),
    }
}

fn forge(f: &Fixture, rp: &RestorePoint, change: impl FnOnce(&mut RestorePoint)) {
    let mut forged = rp.clone();
    change(&mut forged);
    f.coffer
        .catalog
        .put(Kind::RestorePoint, rp.name(), &forged)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_pointing_elsewhere_is_refused_and_nothing_is_deleted() {
    let f = common::fixture("exec: []", "{}").await;
    let location = f.home.path().join("locations/default");
    // Something outside the Profile's directory, and another workload's backup inside it.
    let victim = f.home.path().join("victim");
    std::fs::create_dir_all(victim.join("data")).unwrap();
    std::fs::write(victim.join("data/keep"), "precious").unwrap();
    let other = a_restore_point(&f).await;
    let rp = a_restore_point(&f).await;
    let before = files_under(&location);
    for (what, change) in [
        (
            "../../victim",
            Box::new(|r: &mut RestorePoint| r.spec.prefix = "../../victim".into())
                as Box<dyn Fn(&mut RestorePoint)>,
        ),
        (
            "the whole Profile",
            Box::new(|r: &mut RestorePoint| r.spec.prefix = String::new()),
        ),
        (
            "another restore point",
            Box::new({
                let p = other.spec.prefix.clone();
                move |r: &mut RestorePoint| r.spec.prefix = p.clone()
            }),
        ),
        (
            "another workload",
            Box::new(|r: &mut RestorePoint| r.spec.workload = "../x".into()),
        ),
    ] {
        forge(&f, &rp, change);
        for action in ["delete", "restore"] {
            let e = refused(&f, action, rp.name()).await;
            assert!(
                e.contains("cannot point elsewhere") || e.contains("not a valid name"),
                "{what}, {action}: {e}"
            );
        }
        assert!(
            victim.join("data/keep").exists(),
            "{what}: the directory outside was removed"
        );
        assert_eq!(
            files_under(&location),
            before,
            "{what}: objects were removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_and_manifests_coffer_did_not_write_are_refused() {
    let f = common::fixture("exec: []", "{}").await;
    let rp = a_restore_point(&f).await;
    // A record whose object has no digest (it would be read unverified) or another one.
    for change in [
        Box::new(|r: &mut RestorePoint| r.spec.objects[0].sha256 = String::new())
            as Box<dyn Fn(&mut RestorePoint)>,
        Box::new(|r: &mut RestorePoint| r.spec.objects[0].sha256 = "ab".repeat(32)),
        Box::new(|r: &mut RestorePoint| r.spec.profile = "elsewhere".into()),
    ] {
        forge(&f, &rp, change);
        let e = refused(&f, "restore", rp.name()).await;
        assert!(
            e.contains("does not match its manifest") || e.contains("Profile elsewhere"),
            "{e}"
        );
    }
    forge(&f, &rp, |_| {});
    // A manifest rewritten in the location: its digest changed, or no MAC at all.
    let manifest = f
        .home
        .path()
        .join("locations/default")
        .join(&rp.spec.manifest_key);
    let signed = std::fs::read_to_string(&manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&signed).unwrap();
    v["spec"]["objects"][0]["sha256"] = "cd".repeat(32).into();
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = refused(&f, "restore", rp.name()).await;
    assert!(e.contains("valid MAC"), "{e}");
    v.as_object_mut().unwrap().remove("mac");
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = refused(&f, "restore", rp.name()).await;
    assert!(e.contains("carries no MAC"), "{e}");
    // Put back as coffer signed it: accepted again (the check is not just "always no").
    std::fs::write(&manifest, signed).unwrap();
    let req = ActionRequest {
        action: "delete".into(),
        restore_point: Some(rp.name().to_string()),
        ..Default::default()
    };
    let p = f.coffer.prepare(req).await.unwrap();
    assert_eq!(
        f.coffer.run(&p).await.unwrap().status.phase,
        Phase::Completed
    );
    assert!(!manifest.exists());
}

/// A restore reads what it verified: an object swapped in the location after verification
/// is never streamed to the tool (the read is pinned to the verified version), and the
/// restore fails saying so.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_swapped_after_verification_never_reaches_the_tool() {
    let f = common::fixture(
        r#"exec: ["cat *", "sh -c * *", "sleep *"], unsafeArgs: true"#,
        "{}",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::write(&src, "the verified bytes\n").unwrap();
    let a = common::run(&f, "backup", "file", serde_json::json!({"path": src})).await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    let rp = f
        .coffer
        .restore_point(a.status.restore_point.as_deref().unwrap())
        .unwrap();
    let stored = f
        .home
        .path()
        .join("locations/default")
        .join(&rp.spec.prefix)
        .join(&rp.spec.objects[0].stored_key);
    let original = std::fs::read(&stored).unwrap();
    let swapped = zstd::encode_all(&b"SWAPPED bytes a tool must never see\n"[..], 3).unwrap();
    let req = ActionRequest {
        action: "restore".into(),
        workload: Some("victim".into()),
        restore_point: Some(rp.name().to_string()),
        params: serde_json::json!({"mode": "file", "path": dst, "count": 3})
            .as_object()
            .unwrap()
            .clone(),
        ..Default::default()
    };
    // Read as a stream by the plugin itself: the bytes, and only through this prefix.
    let read = |params: serde_json::Value| ActionRequest {
        action: "restore".into(),
        workload: Some("victim".into()),
        restore_point: Some(rp.name().to_string()),
        params: params.as_object().unwrap().clone(),
        ..Default::default()
    };
    let a = f
        .coffer
        .run(
            &f.coffer
                .prepare(read(serde_json::json!({"mode": "read-stream"})))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert_eq!(a.status.outputs["read"], "the verified bytes\n");
    let a = f
        .coffer
        .run(
            &f.coffer
                .prepare(read(serde_json::json!({"mode": "read-stream", "path": "../../coffer-manifest.json"})))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    let e = common::error_of(&a);
    assert!(e.contains("invalid argument") && e.contains("'..'"), "{e}");

    // Run `p`, swapping the stored object while its plugin waits: verification takes
    // milliseconds; the plugin then waits 3 s before reading.
    let run_swapping = async |p| {
        let swap = async {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            std::fs::write(&stored, &swapped).unwrap();
        };
        let (a, ()) = tokio::join!(f.coffer.run(&p), swap);
        a.unwrap()
    };
    let a = run_swapping(f.coffer.prepare(req).await.unwrap()).await;
    let e = common::error_of(&a);
    assert!(e.contains("changed after it was verified"), "{e}");
    let got = std::fs::read_to_string(&dst).unwrap_or_default();
    assert!(
        !got.contains("SWAPPED"),
        "the tool got the swapped bytes: {got:?}"
    );
    // The plugin reading it as a stream after a swap gets neither the bytes nor success.
    std::fs::write(&stored, &original).unwrap();
    let p = f
        .coffer
        .prepare(read(serde_json::json!({"mode": "read-stream", "count": 3})))
        .await
        .unwrap();
    let a = run_swapping(p).await;
    let e = common::error_of(&a);
    assert!(e.contains("changed after it was verified"), "{e}");
    assert!(
        !a.status.outputs.contains_key("read"),
        "{:?}",
        a.status.outputs
    );
}
