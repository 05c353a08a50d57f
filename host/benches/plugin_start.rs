//! Plugin start-up cost: first compile, cached load of the compiled code, and instantiation,
//! for the built-in postgres-logical plugin. `cargo bench -p coffer --bench plugin_start`.

use coffer::cap::Lending;
use coffer::engine::{Engine, PluginState, call_describe};
use coffer::plugin::PluginBytes;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (name, bytes) = coffer::builtin::BUILTIN_PLUGINS[0];
    let plugin = PluginBytes::new(format!("builtin:{name}"), bytes.to_vec());
    println!("plugin {name}: {} bytes", bytes.len());

    let t = Instant::now();
    let engine = Engine::new(cache.path().to_path_buf()).unwrap();
    engine.prepare(&plugin).unwrap();
    println!(
        "first load (compile with Cranelift, write cache): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let loads: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            engine.prepare(&plugin).unwrap();
            t.elapsed()
        })
        .collect();
    let load = median(loads);
    println!(
        "cached load (deserialize compiled code, resolve imports): {} median of 20",
        micros(load)
    );

    let prepared = engine.prepare(&plugin).unwrap();
    let lending = Lending::detached(name);
    let (inst, call) = rt.block_on(async {
        let mut inst = Vec::new();
        for _ in 0..1000 {
            let mut store = wasmtime::Store::new(engine.wasmtime(), PluginState::new(&lending));
            store.set_epoch_deadline(1_000_000);
            let t = Instant::now();
            prepared.pre.instantiate_async(&mut store).await.unwrap();
            inst.push(t.elapsed());
        }
        let mut call = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            call_describe(&prepared, &lending).await.unwrap();
            call.push(t.elapsed());
        }
        (median(inst), median(call))
    });
    println!(
        "instantiate (new Store + InstancePre::instantiate): {} median of 1000",
        micros(inst)
    );
    println!(
        "instantiate + describe() (parses the manifest JSON in the guest): {} median of 200",
        micros(call)
    );
    println!("cached load + instantiate: {}", micros(load + inst));
}
