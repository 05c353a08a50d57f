//! A plugin built against plugin ABI 0.1.0 (`wit/deps/blueprint-0.1.0`) with bare
//! wit-bindgen, as a plugin compiled before 0.2.0 existed is: its component imports
//! `coffer:blueprint/runtime@0.1.0` and `snapshot@0.1.0`, which the host must keep linking.

wit_bindgen::generate!({
    world: "coffer:blueprint/blueprint@0.1.0",
    path: "../../../wit",
    generate_all,
});

use coffer::blueprint0_1_0::{exec, location, runtime, snapshot, types};
use exports::coffer::blueprint0_1_0::plugin::{
    ActionOutput, ActionRequest, ActionSpec, Capability, Guest, Manifest,
};

const MANIFEST: &[u8] = include_bytes!("../manifest.json");

#[cfg_attr(target_arch = "wasm32", unsafe(link_section = "coffer:manifest"))]
#[used]
static MANIFEST_SECTION: [u8; MANIFEST.len()] = *include_bytes!("../manifest.json");

struct Plugin;

fn describe_actions() -> Vec<ActionSpec> {
    ["backup", "restore", "delete"]
        .iter()
        .map(|a| ActionSpec {
            name: a.to_string(),
            description: String::new(),
            params_schema: None,
        })
        .collect()
}

fn text(e: &types::Error) -> String {
    format!("{e:?}")
}

impl Guest for Plugin {
    fn describe() -> Manifest {
        // The host compares name, version and actions with the embedded manifest.
        let _ = MANIFEST;
        Manifest {
            api_version: "0.1.0".into(),
            name: "abi-v0-1".into(),
            version: "0.1.0".into(),
            description: String::new(),
            targets: vec![],
            actions: describe_actions(),
            capabilities: vec![
                Capability::Exec("echo **".into()),
                Capability::LocationRead,
                Capability::LocationWrite,
                Capability::LocationDelete,
                Capability::Snapshot,
            ],
        }
    }

    fn validate(_: ActionRequest) -> Result<(), Vec<String>> {
        Ok(())
    }

    fn run(req: ActionRequest) -> Result<ActionOutput, types::Error> {
        runtime::log(
            runtime::Level::Info,
            "an ABI 0.1.0 plugin runs",
            &[("action".into(), req.action.clone())],
        );
        let store = location::open("default")?;
        let opts = location::PutOptions {
            compression: location::Compression::Zstd,
            content_type: None,
            metadata: vec![],
        };
        match req.action.as_str() {
            "backup" => {
                runtime::progress("echo", 0, Some(1));
                let out = exec::run(
                    &exec::Command {
                        target: exec::Target {
                            workload: None,
                            container: None,
                        },
                        argv: vec!["echo".into(), "written by ABI 0.1.0".into()],
                        env: vec![],
                        stdin: false,
                        timeout_ms: Some(10_000),
                    },
                    &[],
                    None,
                    4096,
                )?;
                runtime::checkpoint("{\"step\":\"stored\"}");
                let info = store.put_bytes("data.txt", &out.stdout, &opts)?;
                // snapshot@0.1.0 is linked: a call reaches the host and gets its answer.
                let snap = snapshot::create(
                    &snapshot::VolumeRef {
                        namespace: None,
                        name: "data".into(),
                    },
                    None,
                    &[],
                );
                Ok(ActionOutput {
                    artifacts: vec![exports::coffer::blueprint0_1_0::plugin::Artifact {
                        name: "data".into(),
                        location: "default".into(),
                        key: info.key,
                        size: info.size,
                        sha256: Some(info.sha256),
                        metadata: vec![],
                    }],
                    outputs: vec![
                        ("cancelled".into(), runtime::cancelled().to_string()),
                        (
                            "snapshot".into(),
                            match snap {
                                Ok(i) => format!("cut {}", i.snapshot.name),
                                Err(e) => text(&e),
                            },
                        ),
                    ],
                })
            }
            "restore" => {
                let data = store.get_bytes("data.txt", 4096)?;
                Ok(ActionOutput {
                    artifacts: vec![],
                    outputs: vec![(
                        "restored".into(),
                        String::from_utf8_lossy(&data).into_owned(),
                    )],
                })
            }
            _ => {
                for a in &req.input_artifacts {
                    store.delete(&a.key)?;
                }
                Ok(ActionOutput {
                    artifacts: vec![],
                    outputs: vec![],
                })
            }
        }
    }
}

export!(Plugin);
