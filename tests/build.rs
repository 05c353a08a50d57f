//! Builds the test plugins (tests/plugins) for wasm32-wasip2 and tells the tests where they are.

include!("../host/build_wasm.rs");

fn main() {
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = dir.parent().unwrap();
    println!("cargo:rerun-if-changed={}", dir.join("plugins").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("plugins/sdk").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    let target_dir = root.join("target").join("wasm-test-plugins");
    build_plugin_workspace(&dir.join("plugins").join("Cargo.toml"), &target_dir);
    println!(
        "cargo:rustc-env=COFFER_TEST_PLUGINS={}",
        target_dir.join(WASM_TARGET).join("release").display()
    );
}
