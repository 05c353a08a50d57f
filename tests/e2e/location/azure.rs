//! Azurite: Azure Blob with age encryption, a wrong key, cleanup that gives up.

use super::common::*;
use coffer_tests::s3::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite};
use std::path::Path;

#[test]
fn azure_blob_on_azurite_round_trip_encrypted_and_bad_key() {
    let az = Azurite::start();
    az.create_container("backups");
    let c = cli();
    setup(&c);
    let work = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let key = work.path().join("azure-key");
    std::fs::write(&key, format!("{AZURITE_KEY}\n")).unwrap();
    let bad = work.path().join("azure-bad-key");
    // A valid base64 key, but not the account's.
    std::fs::write(&bad, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n").unwrap();
    let profile = |name: &str, keyfile: &Path| {
        format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Profile\nmetadata: {{name: {name}}}\nspec:\n  type: azure\n  account: {AZURITE_ACCOUNT}\n  container: backups\n  prefix: prod\n  endpoint: {}\n  retries: 1\n  retryTimeout: 5s\n  credentials: {{accessKey: {{file: {}}}}}\n  encryption: {{recipients: [{}], identity: {{file: {}}}}}\n",
            az.endpoint(),
            keyfile.display(),
            keys.recipient,
            keys.identity().display()
        )
    };
    assert!(
        c.apply(&format!(
            "{}---\n{}",
            profile("az", &key),
            profile("az-bad", &bad)
        ))
        .ok
    );
    let v = c.ok(&["profile", "validate", "az", "-o", "json"]).json();
    assert_eq!(v["ok"], true, "{v}");
    let badv = c.run(&["profile", "validate", "az-bad"]);
    assert!(!badv.ok);
    assert!(badv.stdout.contains("LIST         FAIL"), "{}", badv.stdout);

    let (src, sum) = data_file(work.path(), 20 << 20);
    let rp = restore_point_of(&backup(
        &c,
        "az",
        &["mode=file", &format!("path={}", src.display())],
    ));
    let blobs = az.blobs("backups");
    assert!(
        blobs.contains(&format!("prod/restorepoints/files/{rp}/file.bin.zst.age")),
        "{blobs:?}"
    );
    assert!(
        blobs.contains(&format!(
            "prod/restorepoints/files/{rp}/coffer-manifest.json"
        )),
        "{blobs:?}"
    );
    c.ok(&["verify", &rp]);
    let dst = work.path().join("az-restored.bin");
    restore_file(&c, &rp, &dst);
    assert_eq!(sha256_file(&dst), sum);

    // The wrong key: refused by the server, nothing recorded.
    let n = restore_points(&c).len();
    let r = backup(
        &c,
        "az-bad",
        &["mode=file", &format!("path={}", src.display())],
    );
    assert!(!r.ok);
    assert_eq!(restore_points(&c).len(), n);
    // Its cleanup cannot succeed with that key either: later commands try a few times,
    // then give up with a note saying how to do it by hand.
    let failed = r.json()["metadata"]["name"].as_str().unwrap().to_string();
    for _ in 0..5 {
        c.ok(&["get", "actionsets"]);
    }
    let a = c.ok(&["get", "actionset", &failed, "-o", "json"]).json();
    assert!(a["status"].get("cleanupPending").is_none(), "{a}");
    assert!(
        a["status"]["error"]
            .as_str()
            .unwrap()
            .contains("gave up removing what it left"),
        "{a}"
    );

    // Delete removes every blob of the restore point.
    c.ok(&["delete", &rp]);
    let left: Vec<String> = az
        .blobs("backups")
        .into_iter()
        .filter(|b| b.contains(&rp))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
