//! The wasm host: one wasmtime Engine per process, plugins compiled once per digest and
//! cached on disk, one Store per action with limits, and the calls into a plugin.

mod call;
pub mod limiter;
mod state;

pub use crate::limits::EffectiveLimits;
pub use call::{CallError, call_describe, call_run, call_validate};
pub use state::PluginState;

use crate::plugin::PluginBytes;
use anyhow::{Context, Result};

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
use wasmtime::Config;
use wasmtime::component::{Component, Linker};

/// Epoch tick: the granularity of guest CPU accounting and preemption.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine, the linker with every capability wired in, and the compile cache.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<PluginState>,
    cache_dir: PathBuf,
}

/// A plugin ready to instantiate (import resolution and type checks done once).
pub struct Prepared {
    pub pre: crate::wit::LinkedPre<PluginState>,
    pub engine: wasmtime::Engine,
}

impl Engine {
    pub fn new(cache_dir: PathBuf) -> Result<Engine> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .max_wasm_stack(512 << 10)
            .async_stack_size(2 << 20);
        pin_wasm_features(&mut cfg);
        let engine = wasmtime::Engine::new(&cfg).wctx(|| "creating the wasm engine")?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        // WASI p2 with an empty WasiCtx: Rust's std imports wasi:cli/io/clocks/random, and
        // with no preopens, env or sockets they grant nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).wctx(|| "linking WASI")?;
        crate::cap::net::link_connection_audit(&mut linker)
            .wctx(|| "linking the audit of TCP connections")?;
        crate::cap::CapabilitySet::add_to_linker(&mut linker)
            .wctx(|| "linking coffer capabilities")?;
        Ok(Engine {
            engine,
            linker,
            cache_dir,
        })
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
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
        let pre = crate::wit::LinkedPre::new(pre).wctx(|| {
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
            match trusted_native_code(&file) {
                // SAFETY: the file is in a cache directory only this user can write, it was
                // written by `precompile_component` of an engine with this exact
                // compatibility hash, and its bytes are the ones recorded then.
                Ok(bytes) => match unsafe { Component::deserialize(&self.engine, &bytes) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "discarding an unusable compile cache entry")
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "not loading a compile cache entry; compiling the plugin again")
                }
            }
        }
        let started = std::time::Instant::now();
        let native = self
            .engine
            .precompile_component(&plugin.bytes)
            .wctx(|| format!("plugin {}: compiling the wasm component", plugin.label))?;
        tracing::debug!(plugin = %plugin.label, ms = started.elapsed().as_millis() as u64, "compiled plugin");
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&native));
        let written = crate::home::write_private(&file, &native)
            .and_then(|()| crate::home::write_private(&digest_file(&file), digest.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the plugin compile cache; continuing without it");
        }
        // SAFETY: `native` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &native) }
            .wctx(|| format!("plugin {}: loading compiled code", plugin.label))
    }
}

/// Where a compiled plugin's sha256 is recorded.
fn digest_file(file: &std::path::Path) -> PathBuf {
    file.with_extension("cwasm.sha256")
}

/// Native code is loaded only from a directory no other user can write, from files owned
/// by this user and not writable by others, whose bytes hash to what was recorded when the
/// host compiled them.
fn trusted_native_code(file: &std::path::Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let dir = file.parent().unwrap_or(std::path::Path::new("."));
    crate::home::check_private(dir)?;
    // SAFETY: a plain syscall.
    let me = unsafe { libc::geteuid() };
    for f in [file.to_path_buf(), digest_file(file)] {
        let m =
            std::fs::symlink_metadata(&f).with_context(|| format!("reading {}", f.display()))?;
        if !m.is_file() || m.uid() != me || m.mode() & 0o022 != 0 {
            anyhow::bail!(
                "{} is not a regular file owned by this user and writable only by it",
                f.display()
            );
        }
    }
    let bytes = std::fs::read(file)?;
    let want = std::fs::read_to_string(digest_file(file))?;
    let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if want.trim() != got {
        anyhow::bail!("its sha256 {got} is not the one recorded when it was compiled");
    }
    Ok(bytes)
}

/// The wasm proposals a plugin may use, pinned rather than left to wasmtime's defaults: the
/// ones rustc's wasm32-wasip2 output needs (SIMD, bulk memory, multi-value, reference types
/// for the component model's tables), and none that widens what the limiter must account for
/// or what the sandbox must get right (several memories per module, 64-bit memories, GC heaps,
/// exceptions, threads, stack switching). A component using one is refused when compiled.
fn pin_wasm_features(cfg: &mut Config) {
    cfg.wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_gc(false)
        .wasm_function_references(false)
        .wasm_exceptions(false)
        .wasm_relaxed_simd(false)
        .wasm_features(wasmtime::WasmFeatures::THREADS, false)
        .wasm_shared_everything_threads(false)
        .wasm_stack_switching(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_tail_call(false)
        .wasm_features(wasmtime::WasmFeatures::CM_ASYNC, false)
        .wasm_component_model_gc(false)
        .wasm_component_model_memory64(false);
}

/// Advance the engine's epoch every tick for as long as the engine lives.
fn spawn_epoch_ticker(engine: &wasmtime::Engine) {
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
