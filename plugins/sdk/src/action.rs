//! Typed actions. A plugin is a list of actions; each names itself, declares its params
//! type (whose JSON schema `describe()` returns), may check the parsed params further, and
//! runs with them parsed. [`export_plugin!`](crate::export_plugin) writes the dispatch:
//!
//! ```ignore
//! struct Backup;
//!
//! impl sdk::Action for Backup {
//!     const NAME: &'static str = "backup";
//!     type Params = BackupParams; // #[derive(Deserialize, JsonSchema)]
//!
//!     fn check(p: &BackupParams, _req: &ActionRequest) -> Result<(), Vec<String>> {
//!         if p.databases.is_empty() {
//!             return Err(vec!["params.databases: list at least one".into()]);
//!         }
//!         Ok(())
//!     }
//!
//!     fn run(p: BackupParams, req: &ActionRequest) -> Result<ActionOutput, Error> { … }
//! }
//!
//! sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, Delete]);
//! ```

use crate::{ActionOutput, ActionRequest, Error, JsonSchema};

/// One action of a plugin.
pub trait Action {
    /// Its name, as in manifest.json (`backup`, `restore`, `delete`, …).
    const NAME: &'static str;
    /// Its params: `#[derive(Deserialize, JsonSchema)]`, with `deny_unknown_fields` so a
    /// misspelt param is an error rather than ignored. Field doc comments become the
    /// descriptions operators see.
    type Params: serde::de::DeserializeOwned + JsonSchema;

    /// Checks beyond the params' shape, run in `validate` (before anything touches the
    /// workload) and again before `run`. Errors name the field (`params.databases: …`).
    fn check(_params: &Self::Params, _req: &ActionRequest) -> Result<(), Vec<String>> {
        Ok(())
    }

    /// Do the work, with the params parsed and checked.
    fn run(params: Self::Params, req: &ActionRequest) -> Result<ActionOutput, Error>;
}

/// `check`'s result from the problems it collected: none is Ok.
pub fn checked(problems: Vec<String>) -> Result<(), Vec<String>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

// Params of an action that takes none: `{}` (or nothing) is accepted, anything else is an
// error.
//
// (A plain comment: a doc comment would become the schema's description.)
#[derive(Debug, serde::Deserialize, JsonSchema)]
#[schemars(crate = "crate::schemars")]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The usual `delete`: remove every object of the restore point (its input artifacts) from
/// the `default` location. List it in `export_plugin!` when that is all a delete needs.
pub struct DeleteArtifacts;

impl Action for DeleteArtifacts {
    const NAME: &'static str = "delete";
    type Params = NoParams;

    fn run(_: NoParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        crate::delete_input_artifacts(req, "default")
    }
}

/// What the generated dispatch calls; not for plugins.
#[doc(hidden)]
pub mod dispatch {
    use super::*;

    pub fn validate<A: Action>(req: &ActionRequest) -> Result<(), Vec<String>> {
        let p = crate::params::<A::Params>(req)?;
        A::check(&p, req)
    }

    pub fn run<A: Action>(req: &ActionRequest) -> Result<ActionOutput, Error> {
        let p = crate::params::<A::Params>(req).map_err(|e| crate::invalid(e.join("; ")))?;
        A::check(&p, req).map_err(|e| crate::invalid(e.join("; ")))?;
        A::run(p, req)
    }

    pub fn schema<A: Action>() -> String {
        crate::schema_for::<A::Params>().to_string()
    }

    pub fn unknown(action: &str, known: &[&str]) -> String {
        format!(
            "unknown action {action:?}: this plugin has {}",
            known.join(", ")
        )
    }
}

/// Export the plugin: its manifest (a path relative to the crate root, embedded in a custom
/// section the host reads without running code) and its actions, each an [`Action`].
#[macro_export]
macro_rules! export_plugin {
    (manifest: $manifest:literal, actions: [$($action:ty),+ $(,)?]) => {
        // Read by the host without running code. Custom sections are not in linear memory,
        // so `describe()` uses the second copy below.
        #[cfg_attr(target_arch = "wasm32", unsafe(link_section = "coffer:manifest"))]
        #[used]
        static COFFER_MANIFEST_SECTION: [u8; include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/",
            $manifest
        ))
        .len()] = *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $manifest));

        const COFFER_MANIFEST: &[u8] =
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $manifest));

        const COFFER_ACTIONS: &[&str] = &[$(<$action as $crate::Action>::NAME),+];

        struct CofferExport;

        impl $crate::bindings::exports::coffer::blueprint0_1_0::plugin::Guest for CofferExport {
            fn describe() -> $crate::Manifest {
                let mut m = $crate::describe(COFFER_MANIFEST);
                for a in m.actions.iter_mut() {
                    $(
                        if a.name == <$action as $crate::Action>::NAME {
                            a.params_schema = Some($crate::action::dispatch::schema::<$action>());
                        }
                    )+
                }
                m
            }

            fn validate(req: $crate::ActionRequest) -> Result<(), Vec<String>> {
                $(
                    if req.action == <$action as $crate::Action>::NAME {
                        return $crate::action::dispatch::validate::<$action>(&req);
                    }
                )+
                Err(vec![$crate::action::dispatch::unknown(&req.action, COFFER_ACTIONS)])
            }

            fn run(req: $crate::ActionRequest) -> Result<$crate::ActionOutput, $crate::Error> {
                $(
                    if req.action == <$action as $crate::Action>::NAME {
                        return $crate::action::dispatch::run::<$action>(&req);
                    }
                )+
                Err($crate::invalid($crate::action::dispatch::unknown(
                    &req.action,
                    COFFER_ACTIONS,
                )))
            }
        }

        $crate::bindings::export_blueprint!(CofferExport with_types_in $crate::bindings);
    };
}
