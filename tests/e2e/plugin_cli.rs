//! `coffer plugin ...` as a user runs it: inspect, keygen, sign, verify.

use coffer_tests::cli::Cli;
use coffer_tests::test_plugin;

#[test]
fn inspect_sign_and_verify_a_plugin_file() {
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), None);
    let dir = tempfile::tempdir().unwrap();
    // Work on a copy: signatures are written next to the file.
    let plugin = dir.path().join("hostile.wasm");
    std::fs::copy(test_plugin("hostile"), &plugin).unwrap();
    let p = plugin.to_str().unwrap();

    let info = c.ok(&["plugin", "inspect", p, "-o", "json"]).json();
    assert_eq!(info["manifest"]["name"], "hostile");
    let sha = info["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);
    assert!(
        info["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("coffer:blueprint/exec@"))
    );

    let key = dir.path().join("signing.key");
    let k = key.to_str().unwrap();
    c.ok(&["plugin", "keygen", k]);
    assert!(
        c.run(&["plugin", "keygen", k])
            .stderr
            .contains("must not exist"),
        "keygen never overwrites"
    );
    let signed = c.ok(&["plugin", "sign", p, "--key", k]);
    assert!(signed.stdout.contains(&sha), "{}", signed.stdout);
    let public = dir.path().join("signing.pub");
    let ok = c.ok(&[
        "plugin",
        "verify",
        p,
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(ok.stdout.contains("signature OK"));

    let other = dir.path().join("other.key");
    c.ok(&["plugin", "keygen", other.to_str().unwrap()]);
    let bad = c.run(&[
        "plugin",
        "verify",
        p,
        "--public-key",
        dir.path().join("other.pub").to_str().unwrap(),
    ]);
    assert!(
        !bad.ok && bad.stderr.contains("does not match"),
        "{}",
        bad.stderr
    );

    // A changed plugin no longer verifies.
    let mut bytes = std::fs::read(&plugin).unwrap();
    bytes.push(0);
    std::fs::write(&plugin, bytes).unwrap();
    let bad = c.run(&[
        "plugin",
        "verify",
        p,
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(
        !bad.ok && bad.stderr.contains("does not match"),
        "{}",
        bad.stderr
    );

    // Not a component at all: a clear error, exit 1.
    std::fs::write(&plugin, b"\0asm\x01\0\0\0").unwrap();
    let bad = c.run(&["plugin", "inspect", p]);
    assert!(
        !bad.ok && bad.stderr.contains("core wasm module"),
        "{}",
        bad.stderr
    );
}

/// BlueprintBindings are applied, listed and kept with the creation time the store gave
/// them; one that would match nothing is refused.
#[test]
fn blueprint_bindings_apply_and_list() {
    let c = Cli::new(env!("CARGO_BIN_EXE_coffer"), None);
    let binding = "apiVersion: coffer.dev/v1alpha1\nkind: BlueprintBinding\nmetadata: {name: pg-by-label}\nspec:\n  blueprint: postgres-logical\n  match:\n    kinds: [StatefulSet]\n    namespaces: [\"team-*\"]\n    labels: {app.kubernetes.io/name: postgresql}\n";
    let r = c.apply(binding);
    assert!(
        r.ok && r.stdout.contains("blueprintbinding pg-by-label created"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let first = c
        .ok(&["get", "binding", "pg-by-label", "-o", "json"])
        .json();
    let created = first["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    // Applying the same document again changes nothing, the creation time included.
    let again = c.apply(binding);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    let second = c
        .ok(&["get", "binding", "pg-by-label", "-o", "json"])
        .json();
    assert_eq!(second["metadata"]["creationTimestamp"], created.as_str());
    let table = c.ok(&["get", "bindings"]);
    for want in [
        "pg-by-label",
        "postgres-logical",
        "StatefulSet",
        "team-*",
        "app.kubernetes.io/name=postgresql",
    ] {
        assert!(table.stdout.contains(want), "{want}:\n{}", table.stdout);
    }
    let empty = c.apply("apiVersion: coffer.dev/v1alpha1\nkind: BlueprintBinding\nmetadata: {name: all}\nspec: {blueprint: x, match: {}}\n");
    assert!(
        !empty.ok && empty.stderr.contains("spec.match is empty"),
        "{}",
        empty.stderr
    );
}
