//! Running actions and keeping their record: resolve the resources, start an ActionSet,
//! call the plugin, commit a backup by writing its manifest last, and recover ActionSets
//! whose process died.

pub mod at;
pub mod chain;
pub mod cleanup;
mod commit;

mod orphans;
mod owner;
mod prepare;
pub mod record;
mod recovery;
mod resources;
mod scope_record;
mod verify;

pub use commit::{UNCHANGED, UNCHANGED_SINCE};
pub(crate) use prepare::merge_params;
pub use prepare::{ActionRequest, CapturedApplication, ClusterSubject, PreparedAction};
pub use resources::Source;

use crate::catalog::Catalog;
use crate::credentials::Credentials;
use crate::engine::{CallError, Engine, call_describe, call_run, call_validate};
use crate::home::Home;
use crate::model::ActionKind;
use crate::model::{ActionSet, Phase, now_rfc3339};
use crate::storage::Location;
use crate::storage::manifest;
use anyhow::Result;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

/// How often a running action's progress is written to the catalog (and its heartbeat).
const PERSIST_EVERY: Duration = Duration::from_secs(2);
/// Bytes of an action's error kept on its record.
const MAX_ERROR: usize = 8 << 10;

/// The local-mode host: state dir, catalog, wasm engine.
pub struct Coffer {
    pub home: Home,
    pub catalog: Arc<Catalog>,
    /// Where Profiles' and Workloads' secret references are read from.
    pub credentials: Credentials,
    engine: OnceLock<Engine>,
    /// What restore point manifests are signed with: the state dir's key locally, the
    /// cluster's (set by the daemon and the CLI from a Secret) on Kubernetes.
    manifest_key: OnceLock<manifest::ManifestKey>,
}

impl Coffer {
    /// Open the state dir and catalog, and settle ActionSets left running by a process that
    /// is gone.
    pub async fn open(home: Home) -> Result<Coffer> {
        let catalog = Arc::new(Catalog::open(&home.catalog())?);
        let coffer = Coffer {
            home,
            catalog,
            credentials: Credentials::local(),
            engine: OnceLock::new(),
            manifest_key: OnceLock::new(),
        };
        coffer.recover_stale().await?;
        Ok(coffer)
    }

    /// The wasm engine, created on first use (commands that run no plugin never pay for it).
    pub fn engine(&self) -> Result<&Engine> {
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let e = Engine::new(self.home.cache_dir())?;
        Ok(self.engine.get_or_init(|| e))
    }

    /// The manifest key; in local mode the state dir's, made on first use.
    pub fn manifest_key(&self) -> Result<&manifest::ManifestKey> {
        if let Some(k) = self.manifest_key.get() {
            return Ok(k);
        }
        let k = manifest::ManifestKey::load_or_create(&self.home.manifest_key())?;
        Ok(self.manifest_key.get_or_init(|| k))
    }

    /// Use the cluster's manifest key (before any action runs).
    pub fn set_manifest_key(&self, key: manifest::ManifestKey) {
        let _ = self.manifest_key.set(key);
    }

    /// Run a prepared action to its end and return the final ActionSet. Whatever happens,
    /// the ActionSet ends Completed or Failed, and a failed backup leaves no objects.
    pub async fn run(&self, p: &PreparedAction) -> Result<ActionSet> {
        // One span per action: every event below it (capability calls, plugin logs, transfers)
        // carries the ActionSet's name.
        let span = tracing::info_span!("action", actionset = %p.name, action = %p.request.action);
        let work = tracing::Instrument::instrument(self.execute(p), span);
        // Progress is written beside the work, never in a select arm's body: the work may
        // be suspended inside a status write that holds the record's lock, and a progress
        // write awaited in the arm would wait on that lock while the work is never polled
        // again (a restore hung that way, once in a few runs, on a real API server).
        let progress = async {
            let mut tick = tokio::time::interval(PERSIST_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                self.persist_progress(p).await;
            }
        };
        let outcome = tokio::select! {
            r = work => r,
            never = progress => never,
        };
        match outcome {
            Ok(()) => {}
            Err(e) => self.fail(p, &e.to_string()).await,
        }
        p.record.current().await
    }

    /// An ActionSet with its audit trail.
    pub fn action_set(&self, name: &str) -> Result<ActionSet> {
        self.catalog
            .action_set(name)?
            .ok_or_else(|| anyhow::anyhow!("ActionSet {name} not found"))
    }

    /// Record an action that was interrupted (e.g. Ctrl-C): the caller has dropped the
    /// `run` future, which killed its processes and aborted its transfers.
    pub async fn abandon(&self, p: &PreparedAction, why: &str) -> Result<ActionSet> {
        p.scope()
            .cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.fail(p, why).await;
        p.record.current().await
    }

    async fn execute(&self, p: &PreparedAction) -> Result<(), ActionError> {
        let prepared = self
            .engine()
            .and_then(|e| e.prepare(&p.plugin))
            .map_err(|e| ActionError(format!("{e:#}")))?;
        let described = call_describe(&prepared, &p.lending)
            .await
            .map_err(ActionError::call)?;
        let declared: Vec<&str> = p.manifest.actions.iter().map(|a| a.name.as_str()).collect();
        let described_actions: Vec<&str> =
            described.actions.iter().map(|a| a.name.as_str()).collect();
        if described.name != p.manifest.name
            || described.version != p.manifest.version
            || described_actions != declared
        {
            return Err(ActionError(format!(
                "plugin {}: describe() returns {} {} with actions {described_actions:?}, but its embedded manifest says {} {} with {declared:?}; the plugin is broken",
                p.plugin.label,
                described.name,
                described.version,
                p.manifest.name,
                p.manifest.version
            )));
        }
        if p.request.action == ActionKind::Backup {
            p.location
                .check_object_lock()
                .await
                .map_err(|e| ActionError(format!("{e:#}")))?;
        }
        if p.request.action == ActionKind::Restore {
            // Verify every object before the plugin runs, so a corrupt restore point is
            // refused before anything touches the workload.
            self.verify_input(p).await.map_err(ActionError)?;
        }
        call_validate(&prepared, &p.lending, &p.wit_request)
            .await
            .map_err(|e| match e {
                CallError::Invalid(problems) => {
                    ActionError(format!("invalid request: {}", problems.join("; ")))
                }
                other => ActionError::call(other),
            })?;
        let output = call_run(&prepared, &p.lending, &p.wit_request).await;
        // The plugin's Store is gone: transfers it left running are cancelled. Let them end
        // before anything is recorded, so the record sees every object there will be.
        p.scope().settle_transfers().await;
        // Whatever the outcome, what the plugin quiesced runs again before anything else.
        let unguarded = settle_guards(p).await;
        let output = output.map_err(ActionError::call)?;
        if let Some(e) = unguarded {
            return Err(ActionError(e));
        }
        self.complete(p, output)
            .await
            .map_err(|e| ActionError(format!("{e:#}")))
    }

    /// Progress on the record, and the runner's heartbeat (every write beats).
    async fn persist_progress(&self, p: &PreparedAction) {
        let res = p
            .record
            .update(&|a: &mut ActionSet| p.copy_records(&mut a.status))
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not record progress");
        }
    }

    /// Read-modify-write of an ActionSet, compare-and-set on its owner token (`expected`:
    /// the token the writer holds; `None` for an ActionSet nobody runs).
    pub fn update(
        &self,
        name: &str,
        expected: Option<&str>,
        f: impl FnOnce(&mut ActionSet),
    ) -> Result<()> {
        let mut a = self.action_set(name)?;
        f(&mut a);
        self.catalog.update_action_set(&a, expected)
    }

    /// Mark failed; a backup's partial objects are removed — never once its manifest is
    /// written (then it is a complete backup whose record failed, and it is kept).
    async fn fail(&self, p: &PreparedAction, why: &str) {
        // Interrupted runs (Ctrl-C, SIGTERM, a lost lease) end here without the plugin's
        // call having finished: its guards run first.
        let unguarded = settle_guards(p).await;
        let why = match unguarded {
            Some(e) if !why.contains(&e) => format!("{why}; {e}"),
            _ => why.to_string(),
        };
        let why = crate::redact::clip(&p.scope().redactor.redact(&why), MAX_ERROR).to_string();
        tracing::error!(actionset = %p.name, error = %why, "action failed");
        // Nothing may still be writing under the prefix while it is judged and cleaned.
        p.scope().settle_transfers().await;
        let mut cleanup_note = String::new();
        let mut cleanup_pending = false;
        if p.manifest_written.load(std::sync::atomic::Ordering::SeqCst) {
            cleanup_note = format!(
                " (its objects and signed manifest are complete in Profile {} under {}; they were kept)",
                p.profile.name(),
                p.prefix
            );
        } else if p.request.action.removes_objects_on_failure() {
            let location = Location::from_profile(&p.profile, &self.credentials);
            let c = cleanup::remove_partial_backup(location, &p.prefix).await;
            cleanup_pending = c.pending();
            cleanup_note = c.note(&p.prefix, "the next coffer command tries again");
        }
        let error = format!("{why}{cleanup_note}");
        let res = p
            .record
            .update(&|a: &mut ActionSet| {
                a.status.phase = Phase::Failed;
                a.status.end_time = Some(now_rfc3339());
                a.status.error = Some(error.clone());
                a.status.cleanup_pending = cleanup_pending;
                a.status.owner = None;
                p.copy_records(&mut a.status);
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "could not record the failure");
        }
    }
}

/// Close the quiesce window and run every guard still armed (last first), once. The
/// failures as one message that says the application may still be quiesced.
async fn settle_guards(p: &PreparedAction) -> Option<String> {
    let failed = p.scope().settle_guards().await;
    if failed.is_empty() {
        return None;
    }
    Some(format!(
        "{}; what they guard may still be in effect (e.g. a frozen filesystem or a held lock): undo it by hand",
        failed.join("; ")
    ))
}

/// Why an action failed, as one line for the user.
#[derive(Debug)]
pub struct ActionError(pub String);

impl ActionError {
    fn call(e: CallError) -> ActionError {
        ActionError(e.to_string())
    }
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
