//! Commands around a cut, as Kasten K10's `backupPrehook` / `backupPosthook`: the
//! prehooks quiesce the application (a lock, a flush, a freeze), the volumes are cut, the
//! posthooks run at once — right after the cut, before the snapshots are ready.
//!
//! Unlike a hook in K10, a posthook runs however the backup ends: every posthook is
//! registered as a guard before the first prehook runs, so a prehook or cut that fails, a
//! deadline, the quiesce limit or a runner that dies (the next coffer runs it) still undoes
//! what the prehooks did. A posthook must therefore be safe to run when its prehook did not
//! (an unlock of what is not locked).

use crate::snapshot::{self, SnapshotInfo, VolumeRef};
use crate::types::Error;
use crate::{Cmd, ErrorContext, quiesce};
use serde::Deserialize;

/// One hook command, run like any exec (the Blueprint must grant it).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// The container to run it in (Kubernetes; default: the subject's first).
    #[serde(default)]
    pub container: Option<String>,
    /// Fail the hook after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl Hook {
    fn cmd(&self) -> Cmd<'static> {
        let mut cmd = Cmd::new(self.command.iter().cloned());
        if let Some(c) = &self.container {
            cmd = cmd.container(c.clone());
        }
        if let Some(ms) = self.timeout_ms {
            cmd = cmd.timeout_ms(ms);
        }
        cmd
    }

    /// How the hook reads in records and errors.
    pub fn name(&self) -> String {
        self.command.join(" ")
    }
}

/// Problems with hooks named `what` in params: each needs a program.
pub fn check(what: &str, hooks: &[Hook]) -> Vec<String> {
    hooks
        .iter()
        .enumerate()
        .filter(|(_, h)| h.command.first().is_none_or(|p| p.is_empty()))
        .map(|(i, _)| format!("params.{what}[{i}].command: name the program to run"))
        .collect()
}

/// Inside one quiesce window: the posthooks registered as guards, the prehooks run, one
/// cut of `volumes` (`snapshot.create-group`), the posthooks run in order at once. The
/// cuts and the window's length in milliseconds.
pub fn cut_between(
    pre: &[Hook],
    post: &[Hook],
    volumes: &[VolumeRef],
    class: Option<&str>,
) -> Result<(Vec<SnapshotInfo>, u64), Error> {
    let window = quiesce::Window::begin()?;
    // Registered last-first, so a host that runs them at the end runs them in order.
    let mut guards = Vec::new();
    for h in post.iter().rev() {
        guards.push(h.cmd().guard(&format!("posthook {}", h.name()))?);
    }
    guards.reverse();
    for h in pre {
        h.cmd()
            .run(None, 0)
            .context(format!("backupPrehook `{}`", h.name()))?;
    }
    let cut = snapshot::create_group(volumes, class, &[]);
    // Right after the cut, cut or not: the application runs again before readiness.
    let mut undone = Ok(());
    for (g, h) in guards.iter().zip(post) {
        let fired = g.fire().context(format!("backupPosthook `{}`", h.name()));
        if undone.is_ok() {
            undone = fired;
        }
    }
    let ms = window.end()?;
    undone?;
    Ok((cut?, ms))
}
