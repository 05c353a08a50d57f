//! The wasm host: one wasmtime Engine per process, plugins compiled once per digest and
//! cached on disk, one Store per action with limits, and the calls into a plugin.

pub mod bindings;
mod call;
pub mod limits;
mod state;

pub use call::{CallError, call_describe, call_run, call_validate};
pub use limits::EffectiveLimits;
pub use state::HostState;

use crate::plugin::PluginBytes;
use anyhow::Result;

/// `.context()` for wasmtime's own error type.
trait WasmContext<T> {
    fn wctx<C: std::fmt::Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C)
    -> Result<T>;
}

impl<T> WasmContext<T> for wasmtime::Result<T> {
    fn wctx<C: std::fmt::Display + Send + Sync + 'static>(
        self,
        f: impl FnOnce() -> C,
    ) -> Result<T> {
        self.map_err(|e| anyhow::Error::from(e).context(f()))
    }
}
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// Epoch tick: the granularity of guest CPU accounting and preemption.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine, the linker with every capability wired in, and the compile cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
}

/// A plugin ready to instantiate (import resolution and type checks done once).
pub struct Prepared {
    pub pre: bindings::BlueprintPre<HostState>,
    pub engine: Engine,
}

impl Runtime {
    pub fn new(cache_dir: PathBuf) -> Result<Runtime> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .max_wasm_stack(512 << 10)
            .async_stack_size(2 << 20);
        let engine = Engine::new(&cfg).wctx(|| "creating the wasm engine")?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        // WASI p2 with an empty WasiCtx: Rust's std imports wasi:cli/io/clocks/random, and
        // with no preopens, env or sockets they grant nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).wctx(|| "linking WASI")?;
        bindings::add_capabilities(&mut linker).wctx(|| "linking coffer capabilities")?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile (or load from the cache) and prepare a plugin.
    pub fn prepare(&self, plugin: &PluginBytes) -> Result<Prepared> {
        let component = self.compile_cached(plugin)?;
        let pre = self.linker.instantiate_pre(&component).wctx(|| {
            format!(
                "plugin {}: its imports do not match this host",
                plugin.label
            )
        })?;
        let pre = bindings::BlueprintPre::new(pre).wctx(|| {
            format!(
                "plugin {}: it does not export coffer:blueprint/plugin",
                plugin.label
            )
        })?;
        Ok(Prepared {
            pre,
            engine: self.engine.clone(),
        })
    }

    /// Compile once per (plugin digest, engine configuration); later loads deserialize the
    /// native code the host itself wrote (never code from elsewhere: it is trusted).
    fn compile_cached(&self, plugin: &PluginBytes) -> Result<Component> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let file = self
            .cache_dir
            .join(format!("{}-{:016x}.cwasm", plugin.sha256, h.finish()));
        if file.exists() {
            // SAFETY: the file is in the host's private cache directory and was written by
            // `precompile_component` of an engine with this exact compatibility hash.
            match unsafe { Component::deserialize_file(&self.engine, &file) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "discarding an unusable compile cache entry")
                }
            }
        }
        let started = std::time::Instant::now();
        let native = self
            .engine
            .precompile_component(&plugin.bytes)
            .wctx(|| format!("plugin {}: compiling the wasm component", plugin.label))?;
        tracing::debug!(plugin = %plugin.label, ms = started.elapsed().as_millis() as u64, "compiled plugin");
        if let Err(e) = write_private(&self.cache_dir, &file, &native) {
            tracing::warn!(error = %e, "could not write the plugin compile cache; continuing without it");
        }
        // SAFETY: `native` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &native) }
            .wctx(|| format!("plugin {}: loading compiled code", plugin.label))
    }
}

fn write_private(
    dir: &std::path::Path,
    file: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// Advance the engine's epoch every tick for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("coffer-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
