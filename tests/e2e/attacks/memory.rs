//! Memory: the limit is one total over every linear memory and table of a plugin, and the wasm
//! features that would widen what the sandbox accounts for are off.

use super::common::{self, error_of, still_healthy};
use coffer_tests::test_plugin;
use wasm_encoder::{ComponentSection, Encode, InstanceSection, MemorySection, MemoryType, Module};

/// A core module with `memories` linear memories of `pages` 64 KiB pages each.
fn memory_module(memories: u32, pages: u64) -> Module {
    let mut mems = MemorySection::new();
    for _ in 0..memories {
        mems.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut m = Module::new();
    m.section(&mems);
    m
}

/// How many core modules the top level of a component defines (the index the next gets).
fn top_level_modules(component: &[u8]) -> u32 {
    use wasmparser::{ComponentOuterAliasKind, Parser, Payload};
    let (mut depth, mut modules) = (0u32, 0u32);
    for payload in Parser::new(0).parse_all(component) {
        match payload.unwrap() {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            Payload::ComponentAliasSection(s) if depth == 1 => {
                for a in s {
                    if let wasmparser::ComponentAlias::Outer {
                        kind: ComponentOuterAliasKind::CoreModule,
                        ..
                    } = a.unwrap()
                    {
                        modules += 1;
                    }
                }
            }
            _ => {}
        }
    }
    modules
}

/// The hostile plugin with `module` appended to its top-level component and instantiated
/// `times` times: the plugin itself is untouched (same manifest, same exports), but
/// instantiating it now creates those extra memories too.
fn plugin_with_extra_instances(module: &Module, times: u32) -> tempfile::NamedTempFile {
    let mut bytes = std::fs::read(test_plugin("hostile")).unwrap();
    let index = top_level_modules(&bytes);
    let section = wasm_encoder::ModuleSection(module);
    bytes.push(section.id());
    section.encode(&mut bytes);
    let mut instances = InstanceSection::new();
    for _ in 0..times {
        instances.instantiate::<[(&str, wasm_encoder::ModuleArg); 0], &str>(index, []);
    }
    bytes.push(instances.id());
    instances.encode(&mut bytes);
    let file = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_memories_share_one_limit() {
    // Eight instances of a module with one 243.75 MiB memory: each is under 256 MiB, all of
    // them together nearly 2 GiB.
    let plugin = plugin_with_extra_instances(&memory_module(1, 3900), 8);
    let f = common::fixture_with(plugin.path(), "exec: []", "{memory: 256Mi}").await;
    let a = common::backup(&f, "ok").await;
    let e = error_of(&a);
    assert!(
        e.contains("exceeded its memory limit of 256 MiB")
            && e.contains("memories and tables together")
            && e.contains("spec.limits.memory"),
        "{e}"
    );
    // The same plugin with room for all eight runs: the limit, not the plugin, stopped it.
    let f = common::fixture_with(plugin.path(), "exec: []", "{memory: 2100Mi}").await;
    let a = common::backup(&f, "ok").await;
    assert_eq!(
        a.status.phase,
        coffer::model::Phase::Completed,
        "{:?}",
        a.status.error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_with_several_memories_is_refused() {
    let plugin = plugin_with_extra_instances(&memory_module(2, 1), 1);
    let f = common::fixture_with(plugin.path(), "exec: []", "{}").await;
    let a = common::backup(&f, "ok").await;
    let e = error_of(&a);
    assert!(
        e.contains("compiling") && e.contains("multiple memories"),
        "{e}"
    );
    // The host goes on with a plugin that is well formed.
    let f = common::fixture(r#"exec: ["echo **"]"#, "{}").await;
    still_healthy(&f).await;
}
