//! Builds the first-party plugins (plugins/, a workspace of its own) for wasm32-wasip2 and
//! embeds them, so `cargo run` and `cargo test` work on a fresh clone with no extra step.
//!
//! The nested cargo gets its own target dir (target/wasm-plugins) so it does not wait on the
//! lock the outer build holds, and a clean environment so clippy/coverage wrappers and host
//! RUSTFLAGS do not leak into the wasm build. A missing wasm32-wasip2 std is installed with
//! rustup: rustup 1.29 does not add the targets of rust-toolchain.toml by itself when the
//! toolchain is already installed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// (plugin name, crate file stem)
const PLUGINS: &[(&str, &str)] = &[("postgres-logical", "postgres_logical")];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for sub in ["Cargo.toml", "Cargo.lock", "manifest", "sdk"] {
        println!("cargo:rerun-if-changed={}", plugins.join(sub).display());
    }
    for (name, _) in PLUGINS {
        println!("cargo:rerun-if-changed={}", plugins.join(name).display());
    }
    println!("cargo:rerun-if-env-changed=COFFER_PLUGINS_TARGET_DIR");

    ensure_wasm_target();

    let target_dir = env::var_os("COFFER_PLUGINS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm-plugins"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the first-party plugins for {TARGET} failed (see the errors above); \
             try `cargo build --release --target {TARGET} --manifest-path plugins/Cargo.toml`"
        );
    }

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut code = String::from(
        "/// First-party plugins built into this binary: (name, wasm bytes).\npub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, stem) in PLUGINS {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{stem}.wasm"));
        let copy = out.join(format!("{stem}.wasm"));
        std::fs::copy(&wasm, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            copy.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), code).unwrap();
}

fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    if libdir.as_deref().is_some_and(has_std) {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; installing it with rustup");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(tc) = env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &tc]);
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        panic!(
            "the {TARGET} Rust target is not installed and `rustup target add {TARGET}` failed; \
             install it by hand and build again"
        );
    }
}

fn has_std(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false)
}
