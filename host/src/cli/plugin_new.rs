//! `coffer plugin new NAME`: an out-of-tree plugin crate that builds with
//! `cargo build --release --target wasm32-wasip2` and passes its own cases.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// (file in the new crate, template)
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/Cargo.toml.tmpl"),
    ),
    (
        "rust-toolchain.toml",
        include_str!("../../templates/plugin/rust-toolchain.toml.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin/gitignore.tmpl"),
    ),
    (
        "manifest.json",
        include_str!("../../templates/plugin/manifest.json.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/plugin/lib.rs.tmpl"),
    ),
    (
        "tests/cases.yaml",
        include_str!("../../templates/plugin/cases.yaml.tmpl"),
    ),
    (
        "blueprint.yaml",
        include_str!("../../templates/plugin/blueprint.yaml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin/README.md.tmpl"),
    ),
];

/// The SDK of the source tree this coffer was built from.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

pub fn new(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<ExitCode> {
    if !coffer_manifest::is_dns_label(name) {
        bail!(
            "{name:?} is not a valid plugin name: lowercase letters, digits and '-', starting with a letter, at most 63 characters"
        );
    }
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; pick another --dir",
            dir.display()
        );
    }
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(default_sdk);
    let sdk = std::fs::canonicalize(&sdk)
        .ok()
        .filter(|p| p.join("Cargo.toml").exists())
        .with_context(|| {
            format!(
                "the plugin SDK is not at {} (this coffer was built from another source tree); pass --sdk PATH/TO/coffer/plugins/sdk",
                sdk.display()
            )
        })?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    let crate_file = name.replace('-', "_");
    // Where cargo will put the component: CARGO_TARGET_DIR when set (relative to the
    // plugin's directory, as cargo reads it there), else the plugin's own target/.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(|v| dir.join(PathBuf::from(v)))
        .unwrap_or_else(|| dir.join("target"));
    let wasm = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{crate_file}.wasm"));
    for (file, template) in FILES {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", name)
            .replace("{{crate_file}}", &crate_file)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{wasm}}", &wasm.display().to_string());
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    out!("created plugin {name} in {}", dir.display());
    out!("  cd {}", dir.display());
    out!("  cargo build --release --target wasm32-wasip2");
    out!("  coffer plugin test {} tests/cases.yaml", wasm.display());
    out!("  coffer apply -f blueprint.yaml");
    Ok(ExitCode::SUCCESS)
}
