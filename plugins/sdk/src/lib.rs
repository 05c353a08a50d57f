//! The coffer plugin SDK: typed Rust over the `coffer:blueprint` WIT bindings.
//!
//! A plugin is a `cdylib` built with `cargo build --target wasm32-wasip2 --release`. It
//! implements [`Plugin`] and calls [`export_plugin!`] with its `manifest.json`, which the
//! macro embeds in the `coffer:manifest` custom section and returns from `describe()`.
//!
//! Bulk bytes never pass through the plugin: start a process with [`Cmd::spawn`], hand its
//! stdout to [`location::Store::put`] and `wait()` on both. The host streams, compresses,
//! hashes and counts.

pub mod bindings {
    wit_bindgen::generate!({
        world: "blueprint",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_blueprint",
        default_bindings_module: "coffer_plugin_sdk::bindings",
        generate_all,
    });
}

pub mod action;
mod cmd;
mod context;
pub mod hooks;
pub mod io;
pub mod log;
pub mod net;
pub mod quiesce;
pub mod scratch;
pub mod session;
pub mod volume;

pub use action::{Action, DeleteArtifacts, NoParams, checked};
// ABI 0.2.0: `runtime` and `snapshot` are this version's; the interfaces it did not change
// keep their 0.1.0 identity.
pub use bindings::coffer::blueprint0_1_0::{exec, kube, location, secrets, signed_http, types};
pub use bindings::coffer::blueprint0_2_0::{runtime, snapshot};
pub use bindings::exports::coffer::blueprint0_1_0::plugin::{
    ActionOutput, ActionRequest, ActionSpec, Artifact, Capability, KindGrant, Manifest,
};
pub use cmd::{Cmd, check_exit};
pub use coffer_manifest;
pub use context::{ErrorContext, checkpoint};
pub use schemars::{self, JsonSchema};
pub use scratch::Scratch;
pub use serde_json;
pub use types::{Error, RemoteError};

/// The JSON schema of a params type (`#[derive(Deserialize, JsonSchema)]`): field doc
/// comments become descriptions, serde defaults become `default`s.
pub fn schema_for<T: JsonSchema>() -> serde_json::Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

/// Convert the embedded manifest document into the WIT record. The document was checked at
/// build time by the plugin's own tests and at load time by the host; a broken one here is a
/// build defect, so it panics (the host reports the trap).
#[doc(hidden)]
pub fn describe(json: &[u8]) -> Manifest {
    let m = coffer_manifest::Manifest::from_json(json).expect("embedded manifest.json is invalid");
    let caps = &m.capabilities;
    let mut capabilities: Vec<Capability> = Vec::new();
    capabilities.extend(caps.exec.iter().cloned().map(Capability::Exec));
    for a in &caps.location {
        capabilities.push(match a {
            coffer_manifest::LocationAccess::Read => Capability::LocationRead,
            coffer_manifest::LocationAccess::Write => Capability::LocationWrite,
            coffer_manifest::LocationAccess::Delete => Capability::LocationDelete,
        });
    }
    capabilities.extend(caps.secrets.iter().cloned().map(Capability::Secret));
    if caps.snapshot {
        capabilities.push(Capability::Snapshot);
    }
    capabilities.extend(caps.kube.iter().map(|k| {
        Capability::Kube(KindGrant {
            api_group: k.api_group.clone(),
            kind: k.kind.clone(),
            verbs: k.verbs.clone(),
        })
    }));
    capabilities.extend(
        caps.signed_http
            .iter()
            .map(|s| Capability::SignedHttp(s.signer().to_string())),
    );
    Manifest {
        api_version: m.api_version,
        name: m.name,
        version: m.version,
        description: m.description,
        targets: m.targets,
        actions: m
            .actions
            .into_iter()
            .map(|a| ActionSpec {
                name: a.name,
                description: a.description,
                params_schema: a.params_schema.map(|s| s.to_string()),
            })
            .collect(),
        capabilities,
    }
}

/// Parse an action's params into `T`. Errors name the field (serde's message), so they can be
/// returned from `validate` as they are.
pub fn params<T: serde::de::DeserializeOwned>(req: &ActionRequest) -> Result<T, Vec<String>> {
    let text = if req.params.trim().is_empty() {
        "{}"
    } else {
        req.params.as_str()
    };
    serde_json::from_str(text).map_err(|e| vec![format!("params of action {}: {e}", req.action)])
}

/// An `invalid-argument` error: the request is wrong (the user's params, the restore point).
pub fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// An `internal` error: something the plugin did not expect.
pub fn internal(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}

/// Make an artifact record from a finished upload.
pub fn artifact(name: &str, location: &str, info: &location::ObjectInfo) -> Artifact {
    Artifact {
        name: name.to_string(),
        location: location.to_string(),
        key: info.key.clone(),
        size: info.size,
        sha256: Some(info.sha256.clone()),
        metadata: info.metadata.clone(),
    }
}

/// The restore point's small JSON record: the input artifact `name`, read from `location`
/// (verified, at most 1 MiB) and parsed; `None` when the restore point has no such artifact.
pub fn json_artifact<T: serde::de::DeserializeOwned>(
    req: &ActionRequest,
    name: &str,
    location: &str,
) -> Result<Option<T>, Error> {
    let Some(a) = req.input_artifacts.iter().find(|a| a.name == name) else {
        return Ok(None);
    };
    let bytes = location::open(location)?.get_bytes(&a.key, 1 << 20)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        internal(format!(
            "the restore point's {name} record ({}): {e}",
            a.key
        ))
    })
}

/// Put options for a compressed object (what dumps want).
pub fn compressed() -> location::PutOptions {
    location::PutOptions {
        compression: location::Compression::Zstd,
        content_type: None,
        metadata: vec![],
    }
}

/// An artifact's metadata value.
pub fn meta<'a>(a: &'a Artifact, key: &str) -> Option<&'a str> {
    a.metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The database artifacts of a restore point (metadata `kind: database`, `database: NAME`),
/// all or the `wanted` ones; an unknown name is an error naming `params.databases` and
/// listing what the restore point has.
pub fn select_databases<'a>(
    artifacts: &'a [Artifact],
    wanted: Option<&[String]>,
) -> Result<Vec<(String, &'a Artifact)>, String> {
    let all: Vec<(String, &Artifact)> = artifacts
        .iter()
        .filter(|a| meta(a, "kind") == Some("database"))
        .filter_map(|a| meta(a, "database").map(|d| (d.to_string(), a)))
        .collect();
    let Some(names) = wanted else {
        return Ok(all);
    };
    names
        .iter()
        .map(|n| {
            all.iter().find(|(d, _)| d == n).cloned().ok_or_else(|| {
                let have: Vec<&str> = all.iter().map(|(d, _)| d.as_str()).collect();
                format!(
                    "params.databases: {n:?} is not in this restore point (it has: {})",
                    have.join(", ")
                )
            })
        })
        .collect()
}

/// The usual delete action: remove every object of the restore point from `location`.
pub fn delete_input_artifacts(req: &ActionRequest, location: &str) -> Result<ActionOutput, Error> {
    let store = location::open(location)?;
    for a in &req.input_artifacts {
        store.delete(&a.key)?;
    }
    Ok(ActionOutput {
        artifacts: vec![],
        outputs: vec![],
    })
}

/// The workload's secret `name`, or `None` when the workload has none by that name. Any
/// other error (e.g. the Blueprint does not grant it) is an error.
pub fn optional_secret(name: &str) -> Result<Option<secrets::Secret>, Error> {
    match secrets::get(name) {
        Ok(s) => Ok(Some(s)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A one-line text for an error (wit-bindgen's `Display` is its `Debug`).
pub fn error_text(e: &Error) -> String {
    match e {
        Error::Denied(s) => format!("denied: {s}"),
        Error::NotFound(s) => format!("not found: {s}"),
        Error::InvalidArgument(s) => format!("invalid argument: {s}"),
        Error::Conflict(s) => format!("conflict: {s}"),
        Error::Timeout(s) => format!("timeout: {s}"),
        Error::Cancelled => "cancelled".to_string(),
        Error::Unavailable(s) => format!("unavailable: {s}"),
        Error::Limit(s) => format!("limit: {s}"),
        Error::Remote(r) => format!("{}: {}", r.system, r.message),
        Error::Io(s) => format!("io: {s}"),
        Error::Internal(s) => format!("internal: {s}"),
    }
}

/// A short suffix unlikely to repeat (for names of staging objects: `shop__restore_1a2b3c`).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = (nanos as u64) ^ (u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 40);
    format!("{:06x}", (n ^ (n >> 24)) & 0xff_ffff)
}

/// The names a staged restore uses beside a database `target`: where it restores first, and
/// where the database it replaces is kept (`target__restore_1a2b3c`,
/// `target__previous_1a2b3c`), each cut to `max` bytes.
pub struct StagingNames {
    pub staging: String,
    pub previous: String,
}

impl StagingNames {
    /// Fresh names beside `target`, each at most `max` bytes (the server's name limit).
    pub fn for_target(target: &str, max: usize) -> StagingNames {
        let sfx = unique_suffix();
        StagingNames {
            staging: derived_name(target, "__restore_", &sfx, max),
            previous: derived_name(target, "__previous_", &sfx, max),
        }
    }

    /// After the swap: the replaced database's name when it is kept, `None` when there
    /// was none or `drop_previous` removed it (`keep_previous` false).
    pub fn settle_previous(
        self,
        target: &str,
        existed: bool,
        keep_previous: bool,
        drop_previous: impl FnOnce(&str) -> Result<(), Error>,
    ) -> Result<Option<String>, Error> {
        match (existed, keep_previous) {
            (false, _) => Ok(None),
            (true, true) => {
                log::info(
                    "kept the database that was replaced",
                    &[("database", target), ("previous", &self.previous)],
                );
                Ok(Some(self.previous))
            }
            (true, false) => {
                drop_previous(&self.previous)?;
                Ok(None)
            }
        }
    }
}

/// `name` with `tag` and `suffix` appended, its start cut (at a character boundary) so the
/// whole fits in `max` bytes: names of staging databases next to the one they stand for.
pub fn derived_name(name: &str, tag: &str, suffix: &str, max: usize) -> String {
    let room = max.saturating_sub(tag.len() + suffix.len());
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{tag}{suffix}", &name[..end])
}
