//! signed-http against s3s-fs, an S3 server that checks SigV4: a request signed with the
//! right keys is served (the object is really written), one signed with wrong keys is
//! refused by the server, and requests outside the Blueprint's grant — another host,
//! another method, a header the host sets — are refused by coffer before anything is
//! sent. The keys appear in no record: not the catalog, the ActionSet, the location or
//! the output.

use super::cli;
use coffer_tests::s3::{S3S_ACCESS_KEY, S3S_SECRET_KEY, S3sFs};
use serde_json::json;

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(files_holding(&p, needle));
        } else if std::fs::read(&p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
        {
            found.push(p);
        }
    }
    found
}

#[test]
fn requests_are_signed_within_the_grant_and_the_keys_show_nowhere() {
    let s3 = S3sFs::start();
    let bucket = s3.create_bucket("signed");
    let keys = tempfile::tempdir().unwrap();
    let write = |name: &str, v: &str| {
        let p = keys.path().join(name);
        std::fs::write(&p, v).unwrap();
        p.display().to_string()
    };
    let (id, secret, wrong) = (
        write("id", S3S_ACCESS_KEY),
        write("secret", S3S_SECRET_KEY),
        write("wrong", "not-the-secret-key"),
    );
    let c = cli();
    let e = s3.endpoint();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {{name: aws}}\nspec:\n  type: aws-sigv4\n  region: us-east-1\n  endpoint: {e}\n  credentials:\n    accessKeyId: {{file: {id}}}\n    secretAccessKey: {{file: {secret}}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {{name: other}}\nspec:\n  type: aws-sigv4\n  region: us-east-1\n  endpoint: {e}\n  credentials:\n    accessKeyId: {{file: {id}}}\n    secretAccessKey: {{file: {wrong}}}\n"
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let requests = json!([
        {"signer": "aws", "method": "PUT", "url": format!("{e}/signed/hello.txt"), "body": "hello, signed"},
        {"signer": "aws", "method": "GET", "url": format!("{e}/")},
        {"signer": "aws", "method": "GET", "url": format!("{e}/signed/hello.txt")},
        {"signer": "other", "method": "GET", "url": format!("{e}/")},
        {"signer": "aws", "method": "DELETE", "url": format!("{e}/signed/hello.txt")},
        {"signer": "aws", "method": "GET", "url": format!("http://127.0.0.1:{}/", s3.port + 1)},
        {"signer": "aws", "method": "GET", "url": "https://s3.us-east-1.amazonaws.com/"},
        {"signer": "aws", "method": "GET", "url": format!("{e}/"), "headers": {"Authorization": "forged"}},
        {"signer": "gcp", "method": "GET", "url": format!("{e}/")},
        // Request guards: checked when registered, sent (signed) as the action ends.
        {"guard": true, "signer": "aws", "method": "PUT", "url": format!("{e}/signed/guarded.txt"), "body": "sent by a guard"},
        {"guard": true, "signer": "aws", "method": "DELETE", "url": format!("{e}/signed/hello.txt")},
        {"guard": true, "signer": "aws", "method": "PUT", "url": format!("{e}/signed/big.txt"), "body": "x".repeat(70_000)},
        {"guard": true, "signer": "gcp", "method": "GET", "url": format!("{e}/")},
        // A user in the URL (credentials a plugin could smuggle to another host).
        {"signer": "aws", "method": "GET", "url": format!("http://coffer:pw@127.0.0.1:{}/", s3.port)},
    ]);
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: signed}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    location: [read, write, delete]\n    signedHttp:\n      - {{signer: aws, service: s3, methods: [GET, PUT]}}\n      - {{signer: other, service: s3}}\n  params:\n    backup: {{mode: signed, requests: {requests}}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: app}}\nspec: {{blueprint: signed}}\n",
        coffer_tests::test_plugin("hostile").display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let run = c.ok(&["backup", "app", "-o", "json"]);
    let b = run.json();
    assert_eq!(b["status"]["phase"], "Completed", "{b:#}");
    let out = &b["status"]["outputs"];
    let answer = |i: usize| out[format!("r{i}")].as_str().unwrap().to_string();
    assert!(answer(0).starts_with("200"), "PUT: {}", answer(0));
    assert_eq!(
        std::fs::read_to_string(bucket.join("hello.txt")).unwrap(),
        "hello, signed",
        "the signed PUT did not write the object"
    );
    assert!(
        answer(1).starts_with("200") && answer(1).contains("<Name>signed</Name>"),
        "ListBuckets: {}",
        answer(1)
    );
    assert_eq!(answer(2), "200 hello, signed");
    assert!(
        answer(3).starts_with("403"),
        "wrong keys were accepted: {}",
        answer(3)
    );
    for (i, why) in [
        (4, "outside what Blueprint grants"),
        (5, "plain http only to the Signer's own http endpoint"),
        (6, "outside what Blueprint grants"),
        (7, "the host sets it"),
        (8, "not declared"),
        (10, "outside what Blueprint grants"),
        (11, "at most 65536"),
        (12, "not declared"),
        (13, "with no user"),
    ] {
        assert!(
            answer(i).starts_with("error:") && answer(i).contains(why),
            "r{i}: {}",
            answer(i)
        );
    }
    assert!(
        bucket.join("hello.txt").exists(),
        "the denied DELETE was sent"
    );
    // The one granted guard was sent as the action ended, signed with the Signer's keys.
    assert_eq!(answer(9), "guarded");
    assert_eq!(
        std::fs::read_to_string(bucket.join("guarded.txt")).unwrap(),
        "sent by a guard"
    );
    assert!(!bucket.join("big.txt").exists());
    let guards = b["status"]["guards"].as_array().unwrap();
    assert_eq!(guards.len(), 1, "{b:#}");
    assert_eq!(guards[0]["firedBy"], "end");
    assert_eq!(guards[0]["result"], "answer 200");

    // The audit names each call, its API and status, never a body or a key.
    let set = c.ok(&[
        "describe",
        "actionset",
        b["metadata"]["name"].as_str().unwrap(),
    ]);
    assert!(set.stdout.contains("signed-http.send"), "{}", set.stdout);
    assert!(set.stdout.contains("status=200"), "{}", set.stdout);
    for needle in [S3S_SECRET_KEY, "not-the-secret-key"] {
        assert!(!run.stdout.contains(needle) && !run.stderr.contains(needle));
        assert!(!set.stdout.contains(needle));
        let leaks = files_holding(c.home.path(), needle.as_bytes());
        assert!(leaks.is_empty(), "{needle} is stored in {leaks:?}");
    }
}

#[test]
fn a_grant_by_name_only_and_a_missing_signer_are_refused_before_anything_runs() {
    let c = cli();
    let plugin = coffer_tests::test_plugin("hostile");
    let bare = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: bare}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    signedHttp: [aws]\n",
        plugin.display()
    ));
    assert!(!bare.ok);
    assert!(
        bare.stderr.contains("grants a signer by name only"),
        "{}",
        bare.stderr
    );

    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: signed}}\nspec:\n  plugin: {{path: {}}}\n  grants:\n    location: [read, write, delete]\n    signedHttp: [{{signer: aws, service: rds}}]\n  params:\n    backup: {{mode: ok}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: app}}\nspec: {{blueprint: signed}}\n",
        plugin.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let r = c.run(&["backup", "app"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("Signer aws") && r.stderr.contains("does not exist"),
        "{}",
        r.stderr
    );
    assert!(
        c.ok(&["get", "restorepoints", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    let bad = c.apply("apiVersion: coffer.dev/v1alpha1\nkind: Signer\nmetadata: {name: aws}\nspec: {type: aws-sigv4, region: us-east-1, credentials: {accessKeyId: {file: /nonexistent/id}, secretAccessKey: {env: COFFER_NO_SUCH_VAR}}}\n");
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("spec.credentials.accessKeyId"),
        "{}",
        bad.stderr
    );
}
