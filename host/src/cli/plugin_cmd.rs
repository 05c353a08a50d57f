//! `coffer plugin ...`: look at a plugin file without running it.

use super::OutputFormat;
use crate::plugin::{PluginBytes, inspect, signing};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Show a plugin's manifest, digest, imports and declared capabilities (no code runs).
    Inspect {
        /// A .wasm component, or `builtin:NAME`.
        file: String,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Create an ed25519 signing key pair: KEY (private, 0600) and KEY.pub.
    Keygen {
        #[arg(value_name = "KEY")]
        out: PathBuf,
    },
    /// Sign a plugin file with a private key; writes FILE.sig (or --signature).
    Sign {
        file: PathBuf,
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[arg(long, value_name = "SIG")]
        signature: Option<PathBuf>,
    },
    /// Create an out-of-tree plugin crate: src, manifest, test cases, a Blueprint. It builds
    /// with `cargo build --release --target wasm32-wasip2` and passes its own cases.
    New {
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin SDK (default: the one in the source tree coffer was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Print the params schemas a plugin derives from its params types (what describe()
    /// returns), or write them into its manifest.json with --write.
    Schema {
        plugin: String,
        #[arg(long, value_name = "MANIFEST")]
        write: Option<PathBuf>,
    },
    /// Run a plugin's test cases (YAML) against scripted capabilities: an exec that answers
    /// from the script, an in-memory location, given secrets. No server, no workload.
    Test {
        /// A .wasm component, or `builtin:NAME`.
        plugin: String,
        /// The cases file (see docs/plugin-authoring.md).
        cases: PathBuf,
        /// Print every case's capability calls, not only failing ones.
        #[arg(short, long)]
        verbose: bool,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Run one action of a plugin file against a local Workload, printing every capability
    /// call (arguments, result, duration) as it happens: the debugger for plugin authors.
    /// The Workload's Blueprint grants apply unless --grant-declared.
    Run {
        /// A .wasm component, or `builtin:NAME`.
        plugin: String,
        /// backup, restore, delete (or another action the plugin has).
        action: String,
        #[arg(long, short = 'w')]
        workload: Option<String>,
        /// The RestorePoint a restore or delete works on.
        #[arg(long = "from", value_name = "RESTOREPOINT")]
        from: Option<String>,
        /// Restore a RestorePoint of another workload into this one.
        #[arg(long)]
        allow_other_workload: bool,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Grant what the plugin declares instead of what the Blueprint grants.
        #[arg(long)]
        grant_declared: bool,
        /// Check params and grants and show the calls the plugin would make, against a
        /// simulated workload (commands succeed with no output); touch nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a plugin file's signature against a public key (hex, or a .pub file).
    Verify {
        file: PathBuf,
        #[arg(long, value_name = "HEX|FILE")]
        public_key: String,
        #[arg(long, value_name = "SIG")]
        signature: Option<PathBuf>,
    },
}

fn read_plugin(file: &std::path::Path) -> Result<PluginBytes> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(PluginBytes::new(file.display().to_string(), bytes))
}

pub async fn run(cmd: &PluginCommand, home: Option<PathBuf>) -> Result<ExitCode> {
    match cmd {
        PluginCommand::New { name, dir, sdk } => {
            super::plugin_new::new(name, dir.as_deref(), sdk.as_deref())
        }
        PluginCommand::Schema { plugin, write } => {
            super::plugin_dev::schema(home, plugin, write.as_deref()).await
        }
        PluginCommand::Test {
            plugin,
            cases,
            verbose,
            output,
        } => super::plugin_dev::test(home, plugin, cases, *verbose, *output).await,
        PluginCommand::Run {
            plugin,
            action,
            workload,
            from,
            allow_other_workload,
            profile,
            params,
            grant_declared,
            dry_run,
        } => {
            let args = super::plugin_dev::RunArgs {
                plugin: plugin.clone(),
                action: action.clone(),
                workload: workload.clone(),
                from: from.clone(),
                allow_other_workload: *allow_other_workload,
                profile: profile.clone(),
                params: params.clone(),
                grant_declared: *grant_declared,
                dry_run: *dry_run,
            };
            super::plugin_dev::run(home, args).await
        }
        PluginCommand::Keygen { out } => {
            let public = signing::keygen(out)?;
            out!("private key: {} (keep it secret)", out.display());
            out!(
                "public key:  {public} (also in {})",
                out.with_extension("pub").display()
            );
            out!("require it in a Blueprint: spec.plugin.publicKey: {public}");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Sign {
            file,
            key,
            signature,
        } => {
            let p = read_plugin(file)?;
            inspect(&p)?; // never sign something that would not be admitted
            let sig = signing::sign(&p.sha256, key)?;
            let out = signature
                .clone()
                .unwrap_or_else(|| signing::signature_path(file));
            std::fs::write(&out, format!("{sig}\n"))
                .with_context(|| format!("writing {}", out.display()))?;
            out!(
                "signed {} (sha256 {}) -> {}",
                file.display(),
                p.sha256,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Verify {
            file,
            public_key,
            signature,
        } => {
            let p = read_plugin(file)?;
            let key = match std::fs::read_to_string(public_key) {
                Ok(text) => text,
                Err(_) => public_key.clone(),
            };
            let sig_path = signature
                .clone()
                .unwrap_or_else(|| signing::signature_path(file));
            let sig = std::fs::read_to_string(&sig_path)
                .with_context(|| format!("reading {}", sig_path.display()))?;
            signing::verify(&p.sha256, &sig, &key)
                .with_context(|| format!("{}", file.display()))?;
            out!("{}: signature OK (sha256 {})", file.display(), p.sha256);
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { file, output } => {
            let p = super::plugin_dev::load_plugin(file)?;
            let i = inspect(&p)?;
            let m = &i.manifest;
            match output {
                OutputFormat::Json | OutputFormat::Yaml => {
                    let v = serde_json::json!({
                        "file": file, "sha256": p.sha256, "size": p.bytes.len(),
                        "manifest": m, "imports": i.imports,
                    });
                    if *output == OutputFormat::Json {
                        out!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        out_raw!("{}", serde_yaml_ng::to_string(&v)?);
                    }
                }
                OutputFormat::Table => {
                    out!("plugin:      {} {}", m.name, m.version);
                    out!("api version: {}", m.api_version);
                    out!("file:        {file} ({} bytes)", p.bytes.len());
                    out!("sha256:      {}", p.sha256);
                    if !m.description.is_empty() {
                        out!("description: {}", m.description);
                    }
                    if !m.targets.is_empty() {
                        out!("targets:     {}", m.targets.join(", "));
                    }
                    out!("actions:");
                    for a in &m.actions {
                        out!("  {:<16} {}", a.name, a.description);
                    }
                    out!("declares (a Blueprint must grant these for calls to succeed):");
                    let c = &m.capabilities;
                    for e in &c.exec {
                        out!("  exec      {e}");
                    }
                    if !c.location.is_empty() {
                        out!(
                            "  location  {}",
                            c.location
                                .iter()
                                .map(|a| a.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    for s in &c.secrets {
                        out!("  secret    {s}");
                    }
                    if c.snapshot {
                        out!("  snapshot");
                    }
                    for k in &c.kube {
                        out!(
                            "  kube      {}/{} {}",
                            k.api_group,
                            k.kind,
                            k.verbs.join(",")
                        );
                    }
                    for s in &c.signed_http {
                        out!("  signed-http {}", s.signer());
                    }
                    out!("imports:");
                    for imp in &i.imports {
                        out!("  {imp}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
