//! Plugins before they run: where the bytes come from, their digest and signature, their
//! manifest (read from the custom section without running code) and their imports (admission).

pub mod signing;

use crate::model::PluginRef;
use anyhow::{Context, Result, anyhow, bail};
use coffer_manifest::{MANIFEST_SECTION, Manifest};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wasmparser::{Parser, Payload};

/// A plugin's bytes and identity.
#[derive(Clone)]
pub struct PluginBytes {
    /// `builtin:NAME` or the file path, for messages.
    pub label: String,
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
}

impl std::fmt::Debug for PluginBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes, sha256 {})",
            self.label,
            self.bytes.len(),
            self.sha256
        )
    }
}

impl PluginBytes {
    pub fn new(label: String, bytes: Vec<u8>) -> PluginBytes {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        PluginBytes {
            label,
            bytes: Arc::new(bytes),
            sha256,
        }
    }

    /// Resolve a Blueprint's plugin reference and check its pinned digest.
    pub fn resolve(r: &PluginRef, blueprint: &str) -> Result<PluginBytes> {
        let p = match (&r.builtin, &r.path) {
            (Some(name), None) => {
                let bytes = crate::builtin::plugin(name).ok_or_else(|| {
                    let names: Vec<&str> = crate::builtin::BUILTIN_PLUGINS.iter().map(|(n, _)| *n).collect();
                    anyhow!("Blueprint {blueprint}: spec.plugin.builtin: no built-in plugin {name:?} (built in: {})", names.join(", "))
                })?;
                PluginBytes::new(format!("builtin:{name}"), bytes.to_vec())
            }
            (None, Some(path)) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "Blueprint {blueprint}: spec.plugin.path: cannot read {}",
                        path.display()
                    )
                })?;
                PluginBytes::new(path.display().to_string(), bytes)
            }
            _ => {
                bail!("Blueprint {blueprint}: spec.plugin: give exactly one of `builtin` or `path`")
            }
        };
        if let Some(public_key) = &r.public_key {
            let Some(path) = &r.path else {
                bail!(
                    "Blueprint {blueprint}: spec.plugin.publicKey applies to plugin files (spec.plugin.path); built-in plugins are part of coffer"
                );
            };
            let sig_path = r
                .signature
                .clone()
                .unwrap_or_else(|| signing::signature_path(path));
            let sig = std::fs::read_to_string(&sig_path).with_context(|| {
                format!(
                    "Blueprint {blueprint} requires a signed plugin, but its signature {} cannot be read; sign it with `coffer plugin sign`",
                    sig_path.display()
                )
            })?;
            signing::verify(&p.sha256, &sig, public_key).with_context(|| {
                format!("Blueprint {blueprint}: plugin {} failed signature verification ({}); refusing to load it", p.label, sig_path.display())
            })?;
        }
        if let Some(want) = &r.sha256 {
            let want = want.trim_start_matches("sha256:").to_ascii_lowercase();
            if want != p.sha256 {
                bail!(
                    "Blueprint {blueprint}: plugin {} has sha256 {}, but spec.plugin.sha256 pins {want}; refusing to load it",
                    p.label,
                    p.sha256
                );
            }
        }
        Ok(p)
    }
}

/// What admission learned from a plugin file without running it.
#[derive(Debug)]
pub struct Inspection {
    pub manifest: Manifest,
    /// Interfaces the component imports, e.g. `wasi:io/streams@0.2.12`.
    pub imports: Vec<String>,
}

/// Interfaces a plugin may import: our package, and the WASI subset Rust's std uses. No
/// filesystem, sockets or http: a plugin that imports them is refused before it is compiled.
/// A plugin that declares `net` may import wasi:sockets (what it may reach is the socket
/// check's, see [`crate::cap::net`]; UDP and wasi's name lookup are off) and the two
/// filesystem interfaces std's socket support links (no directory is ever preopened, so
/// they reach nothing).
fn import_allowed(name: &str, net: bool) -> bool {
    let (iface, _version) = name.split_once('@').unwrap_or((name, ""));
    if iface.starts_with("coffer:blueprint/") {
        return true;
    }
    if net
        && (iface.starts_with("wasi:sockets/")
            || matches!(iface, "wasi:filesystem/types" | "wasi:filesystem/preopens"))
    {
        return true;
    }
    matches!(
        iface,
        "wasi:io/error"
            | "wasi:io/poll"
            | "wasi:io/streams"
            | "wasi:cli/environment"
            | "wasi:cli/exit"
            | "wasi:cli/stdin"
            | "wasi:cli/stdout"
            | "wasi:cli/stderr"
            | "wasi:cli/terminal-input"
            | "wasi:cli/terminal-output"
            | "wasi:cli/terminal-stdin"
            | "wasi:cli/terminal-stdout"
            | "wasi:cli/terminal-stderr"
            | "wasi:clocks/monotonic-clock"
            | "wasi:clocks/wall-clock"
            | "wasi:random/random"
            | "wasi:random/insecure"
            | "wasi:random/insecure-seed"
    )
}

/// Read the manifest and imports of a component, and refuse what may not run.
pub fn inspect(p: &PluginBytes) -> Result<Inspection> {
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut imports = Vec::new();
    let mut depth = 0usize;
    let mut is_component = false;
    for payload in Parser::new(0).parse_all(&p.bytes) {
        let payload =
            payload.with_context(|| format!("plugin {}: not a valid wasm file", p.label))?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 => {
                is_component = matches!(encoding, wasmparser::Encoding::Component);
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import
                        .with_context(|| format!("plugin {}: bad import section", p.label))?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::CustomSection(c) if c.name() == MANIFEST_SECTION => {
                if manifest_bytes.is_some() {
                    bail!(
                        "plugin {}: more than one {MANIFEST_SECTION} section",
                        p.label
                    );
                }
                manifest_bytes = Some(c.data().to_vec());
            }
            _ => {}
        }
    }
    if !is_component {
        bail!(
            "plugin {}: this is a core wasm module, not a component; build it with `cargo build --target wasm32-wasip2`",
            p.label
        );
    }
    let manifest_bytes = manifest_bytes.ok_or_else(|| {
        anyhow!(
            "plugin {}: no {MANIFEST_SECTION} custom section; plugins embed their manifest with coffer_plugin_sdk::export_plugin!",
            p.label
        )
    })?;
    let manifest =
        Manifest::from_json(&manifest_bytes).map_err(|e| anyhow!("plugin {}: {e}", p.label))?;
    let net = !manifest.capabilities.net.is_empty();
    let refused: Vec<&String> = imports.iter().filter(|i| !import_allowed(i, net)).collect();
    if !refused.is_empty() {
        bail!(
            "plugin {}: imports interfaces a plugin may not use: {} (no filesystem, sockets or http; use the coffer capabilities, and declare `net` in the manifest for TCP)",
            p.label,
            refused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Inspection { manifest, imports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_plugin_passes_admission() {
        let (name, bytes) = crate::builtin::BUILTIN_PLUGINS[0];
        let p = PluginBytes::new(format!("builtin:{name}"), bytes.to_vec());
        let i = inspect(&p).expect("builtin plugin is admitted");
        assert_eq!(i.manifest.name, name);
        assert!(
            i.imports
                .iter()
                .any(|i| i.starts_with("coffer:blueprint/exec@")),
            "{:?}",
            i.imports
        );
    }

    #[test]
    fn refuses_non_components_and_bad_digests() {
        let p = PluginBytes::new("x".into(), b"\0asm\x01\0\0\0".to_vec());
        assert!(
            inspect(&p)
                .unwrap_err()
                .to_string()
                .contains("core wasm module")
        );
        let p = PluginBytes::new("x".into(), b"not wasm".to_vec());
        assert!(
            inspect(&p)
                .unwrap_err()
                .to_string()
                .contains("not a valid wasm")
        );
        let r = PluginRef {
            builtin: Some("postgres-logical".into()),
            sha256: Some("00".repeat(32)),
            ..Default::default()
        };
        assert!(
            PluginBytes::resolve(&r, "bp")
                .unwrap_err()
                .to_string()
                .contains("refusing")
        );
        assert!(!import_allowed("wasi:filesystem/preopens@0.2.0", false));
        assert!(!import_allowed("wasi:sockets/tcp@0.2.0", false));
        // Declaring net admits sockets (and std's filesystem links), never http.
        assert!(import_allowed("wasi:sockets/tcp@0.2.0", true));
        assert!(import_allowed("wasi:filesystem/preopens@0.2.0", true));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.2.0", true));
    }
}
