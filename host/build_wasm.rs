// Shared by host/build.rs and tests/build.rs (each `include!`s it): build a plugin
// workspace for wasm32-wasip2 with a clean environment, installing the target when missing.

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Build the workspace at `manifest` into `target_dir`; panics with what to do on failure.
pub fn build_plugin_workspace(manifest: &std::path::Path, target_dir: &std::path::Path) {
    ensure_wasm_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
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
    let status = cmd.status().expect("could not run cargo to build plugins");
    if !status.success() {
        panic!(
            "building {} for {WASM_TARGET} failed (see the errors above); try `cargo build --release --target {WASM_TARGET} --manifest-path {}`",
            manifest.display(),
            manifest.display()
        );
    }
}

fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = std::process::Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    if libdir.as_deref().is_some_and(has_std) {
        return;
    }
    // Two build scripts (host, tests) may get here at once: one installs, the other waits.
    let lock = std::env::temp_dir().join("coffer-wasm-target.lock");
    let waited = std::time::Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if waited.elapsed() > std::time::Duration::from_secs(300) {
            break; // a stale lock from a killed build: go ahead
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        if libdir.as_deref().is_some_and(has_std) {
            return;
        }
    }
    println!("cargo:warning=the {WASM_TARGET} target is missing; installing it with rustup");
    let mut cmd = std::process::Command::new("rustup");
    cmd.args(["target", "add", WASM_TARGET]);
    if let Ok(tc) = std::env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &tc]);
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    let _ = std::fs::remove_dir(&lock);
    if !ok {
        panic!(
            "the {WASM_TARGET} Rust target is not installed and `rustup target add {WASM_TARGET}` failed; \
             install it by hand and build again"
        );
    }
}

fn has_std(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false)
}
