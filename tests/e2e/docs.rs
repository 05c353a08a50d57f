//! Generated files stay current: the ABI reference in docs/plugin-authoring.md (from
//! wit/blueprint.wit and the 0.1.0 interfaces it keeps, wit/deps/blueprint-0.1.0) and deploy/crds.yaml (from the Rust types, `coffer crds`). These tests
//! fail when they differ (COFFER_UPDATE_DOCS=1 rewrites them instead).

use std::path::Path;

const MARKER: &str = "## ABI reference";

/// Two tests read and (with COFFER_UPDATE_DOCS) rewrite docs/plugin-authoring.md: one at a
/// time.
static PLUGIN_AUTHORING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One documented item of the WIT.
struct Item {
    interface: String,
    kind: &'static str,
    name: String,
    signature: String,
    doc: String,
}

fn parse(wit: &str) -> (Vec<(String, String)>, Vec<Item>) {
    let mut interfaces = Vec::new();
    let mut items = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut interface = String::new();
    let mut resource: Option<String> = None;
    for raw in wit.lines() {
        let line = raw.trim();
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        let text = doc.join(" ");
        if let Some(rest) = line.strip_prefix("interface ") {
            interface = rest.trim_end_matches('{').trim().to_string();
            interfaces.push((interface.clone(), text));
        } else if let Some(rest) = line.strip_prefix("resource ") {
            let name = rest.trim_end_matches(['{', ';']).trim().to_string();
            items.push(Item {
                interface: interface.clone(),
                kind: "resource",
                name: name.clone(),
                signature: String::new(),
                doc: text,
            });
            if line.ends_with('{') {
                resource = Some(name);
            }
        } else if line == "}" {
            resource = None;
        } else if let Some((name, sig)) = line.split_once(": func") {
            let name = match &resource {
                Some(r) => format!("{r}.{}", name.trim()),
                None => name.trim().to_string(),
            };
            items.push(Item {
                interface: interface.clone(),
                kind: "func",
                name,
                signature: format!("func{}", sig.trim_end_matches(';')),
                doc: text,
            });
        } else {
            for kind in ["record", "variant", "enum", "flags", "type"] {
                if let Some(rest) = line.strip_prefix(&format!("{kind} ")) {
                    let name = rest
                        .split([' ', '{', '='])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    items.push(Item {
                        interface: interface.clone(),
                        kind: "type",
                        name: format!("{kind} {name}"),
                        signature: String::new(),
                        doc: text.clone(),
                    });
                }
            }
        }
        doc.clear();
    }
    (interfaces, items)
}

fn version(wit: &str) -> &str {
    let package = wit.lines().next().unwrap_or_default().trim_end_matches(';');
    package.rsplit('@').next().unwrap_or_default()
}

/// The reference of the ABI a plugin builds against: this version's interfaces (`wit`),
/// then those it keeps from 0.1.0 (`old`), each with its version.
fn generate(wit: &str, old: &str) -> String {
    let (mut interfaces, mut items) = parse(wit);
    let mut versions: Vec<&str> = vec![version(wit); interfaces.len()];
    let (old_interfaces, old_items) = parse(old);
    for (iface, doc) in old_interfaces {
        if interfaces.iter().any(|(i, _)| *i == iface) {
            continue;
        }
        items.extend(
            old_items
                .iter()
                .filter(|i| i.interface == iface)
                .map(|i| Item {
                    interface: i.interface.clone(),
                    kind: i.kind,
                    name: i.name.clone(),
                    signature: i.signature.clone(),
                    doc: i.doc.clone(),
                }),
        );
        interfaces.push((iface, doc));
        versions.push(version(old));
    }
    let package = wit.lines().next().unwrap_or_default().trim_end_matches(';');
    let mut out = format!(
        "{MARKER}\n\n`{package}` — every interface, function, resource and type, with its documentation. The interfaces 0.2.0 did not change keep their 0.1.0 identity (`wit/deps/blueprint-0.1.0/`); a plugin built against 0.1.0 runs unchanged.\n"
    );
    for ((iface, doc), v) in interfaces.iter().zip(versions) {
        out.push_str(&format!("\n### interface `{iface}` ({v})\n\n"));
        if !doc.is_empty() {
            out.push_str(&format!("{doc}\n\n"));
        }
        out.push_str("| item | signature | what it does |\n|---|---|---|\n");
        for i in items.iter().filter(|i| &i.interface == iface) {
            let sig = if i.signature.is_empty() {
                String::new()
            } else {
                format!("`{}`", i.signature)
            };
            let name = if i.kind == "resource" {
                format!("resource `{}`", i.name)
            } else {
                format!("`{}`", i.name)
            };
            out.push_str(&format!(
                "| {name} | {sig} | {} |\n",
                i.doc.replace('|', "\\|")
            ));
        }
    }
    out.push_str(&format!("\n### The WIT, whole\n\n```wit\n{}```\n", wit));
    out
}

#[test]
fn plugin_authoring_abi_reference_matches_the_wit() {
    let _one_at_a_time = PLUGIN_AUTHORING.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wit = std::fs::read_to_string(root.join("wit/blueprint.wit")).unwrap();
    let old = std::fs::read_to_string(root.join("wit/deps/blueprint-0.1.0/blueprint.wit")).unwrap();
    let doc_path = root.join("docs/plugin-authoring.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let head = match doc.find(&format!("\n{MARKER}\n")) {
        Some(i) => &doc[..=i],
        None => doc.as_str(),
    };
    let want = format!("{}\n{}", head.trim_end(), generate(&wit, &old));
    if std::env::var_os("COFFER_UPDATE_DOCS").is_some() {
        std::fs::write(&doc_path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/plugin-authoring.md's ABI reference is out of date with wit/blueprint.wit; run `COFFER_UPDATE_DOCS=1 cargo test --test docs`"
    );
    // Every function of the plugin-facing interfaces is in the reference.
    for f in [
        "spawn",
        "run",
        "get-into",
        "put",
        "checkpoint",
        "write-to",
        "describe",
        "validate",
        "add-guard",
        "guard.fire",
        "quiesce-begin",
        "create-group",
    ] {
        assert!(
            want.contains(&format!("`{f}`")) || want.contains(&format!(".{f}`")),
            "{f} missing"
        );
    }
}

#[test]
fn deploy_crds_match_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = String::from_utf8(out.stdout).unwrap();
    if std::env::var_os("COFFER_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "deploy/crds.yaml is out of date with the Rust types; run `COFFER_UPDATE_DOCS=1 cargo test --test docs`"
    );
    // Every kind, the status subresource where the daemon writes.
    for kind in [
        "Blueprint",
        "Profile",
        "BlueprintBinding",
        "ActionSet",
        "RestorePoint",
        "Policy",
    ] {
        assert!(want.contains(&format!("kind: {kind}\n")), "{kind} missing");
    }
    assert_eq!(
        want.matches("status: {}").count(),
        3,
        "ActionSet, Profile (its validation) and Policy (its runs) have a status, nothing else"
    );
}

#[test]
fn deploy_examples_parse_as_coffer_kinds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut seen = 0;
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap();
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc: serde_json::Value = serde::Deserialize::deserialize(d).unwrap();
            let spec = doc["spec"].clone();
            let what = f.path().display().to_string();
            match doc["kind"].as_str().unwrap() {
                "Profile" => {
                    serde_json::from_value::<coffer::model::ProfileSpec>(spec).expect(&what);
                }
                "BlueprintBinding" => {
                    serde_json::from_value::<coffer::model::BlueprintBindingSpec>(spec)
                        .expect(&what);
                }
                "Policy" => {
                    let spec: coffer::model::PolicySpec =
                        serde_json::from_value(spec).expect(&what);
                    coffer::policy::rules(&spec).unwrap_or_else(|e| panic!("{what}: {e}"));
                }
                // Kubernetes' own kinds: checked against what the daemon does by the
                // daemon tests (coffer_tests::rbac).
                "RoleBinding" | "Role" | "ServiceAccount" => {}
                other => panic!("{what}: unexpected kind {other}"),
            }
            seen += 1;
        }
    }
    assert!(seen >= 2);
}

const SDK_START: &str = "<!-- sdk-reference: generated from plugins/sdk/src (tests/src/sdk_reference.rs); `COFFER_UPDATE_DOCS=1 cargo test --test docs` rewrites it -->";
const SDK_END: &str = "<!-- end of sdk-reference -->";

/// The SDK reference in docs/plugin-authoring.md is the one generated from the SDK's
/// source, and every public item of the SDK is documented.
#[test]
fn the_sdk_reference_matches_the_sdk() {
    let _one_at_a_time = PLUGIN_AUTHORING.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = coffer_tests::sdk_reference::render(&root.join("plugins/sdk/src"))
        .unwrap_or_else(|missing| {
            panic!(
                "public SDK items without a doc comment (document them): {}",
                missing.join(", ")
            )
        });
    let path = root.join("docs/plugin-authoring.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (start, end) = match (doc.find(SDK_START), doc.find(SDK_END)) {
        (Some(s), Some(e)) => (s + SDK_START.len(), e),
        _ => panic!("docs/plugin-authoring.md has no SDK reference markers"),
    };
    let want = format!("\n{}\n", generated.trim());
    if std::env::var_os("COFFER_UPDATE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        doc[start..end] == want,
        "docs/plugin-authoring.md's SDK reference is out of date with plugins/sdk/src; run `COFFER_UPDATE_DOCS=1 cargo test --test docs`"
    );
}
