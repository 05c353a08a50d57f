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
