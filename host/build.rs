//! Builds the first-party plugins (plugins/, a workspace of its own) for wasm32-wasip2 and
//! embeds them, so `cargo run` and `cargo test` work on a fresh clone with no extra step.
//!
//! The nested cargo gets its own target dir (target/wasm-plugins) so it does not wait on the
//! lock the outer build holds, and a clean environment so clippy/coverage wrappers and host
//! RUSTFLAGS do not leak into the wasm build. A missing wasm32-wasip2 std is installed with
//! rustup: rustup 1.29 does not add the targets of rust-toolchain.toml by itself when the
//! toolchain is already installed.

include!("build_wasm.rs");

use std::env;
use std::path::PathBuf;

/// (plugin name, crate file stem)
const PLUGINS: &[(&str, &str)] = &[
    ("postgres-logical", "postgres_logical"),
    ("mysql-logical", "mysql_logical"),
    ("mysql-consistent", "mysql_consistent"),
    ("fsfreeze", "fsfreeze"),
    ("postgres-consistent", "postgres_consistent"),
    ("volumes", "volumes"),
    ("rds", "rds"),
    ("pgbackrest", "pgbackrest"),
    ("etcd", "etcd"),
    ("redis", "redis"),
    ("kafka", "kafka"),
    ("medusa", "medusa"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=build_wasm.rs");
    for sub in ["Cargo.toml", "Cargo.lock", "manifest", "sdk", "logical"] {
        println!("cargo:rerun-if-changed={}", plugins.join(sub).display());
    }
    for (name, _) in PLUGINS {
        println!("cargo:rerun-if-changed={}", plugins.join(name).display());
    }
    println!("cargo:rerun-if-env-changed=COFFER_PLUGINS_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=COFFER_PREBUILT_PLUGINS");

    // COFFER_PREBUILT_PLUGINS names a directory of already built plugin .wasm files (for
    // packagers, and for builds with a toolchain that has no wasm32-wasip2 std, e.g. fuzzing
    // on nightly).
    let wasm_dir = match env::var_os("COFFER_PREBUILT_PLUGINS") {
        Some(dir) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&dir).display());
            PathBuf::from(dir)
        }
        None => {
            let target_dir = env::var_os("COFFER_PLUGINS_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target").join("wasm-plugins"));
            build_plugin_workspace(&plugins.join("Cargo.toml"), &target_dir);
            target_dir.join(WASM_TARGET).join("release")
        }
    };

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut code = String::from(
        "/// First-party plugins built into this binary: (name, wasm bytes).\npub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, stem) in PLUGINS {
        let wasm = wasm_dir.join(format!("{stem}.wasm"));
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
