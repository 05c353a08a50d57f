//! What goes wrong in cluster mode, by kind: each variant labels the reconcile-error metric
//! (`coffer_reconcile_errors_total{error=…}`), and decides whether retrying can help.

use crate::model::Phase;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed (network, permissions, a conflict).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The ActionSet, or something it names, is wrong: retrying cannot help.
    #[error("{0}")]
    Invalid(String),
    /// Something it names does not exist (yet).
    #[error("{0}")]
    NotFound(String),
    /// A deleted ActionSet waits for its action to stop before its finalizer goes.
    #[error("ActionSet {0} is still running; it goes once the action has stopped")]
    StillRunning(String),
    /// Recording an outcome hit a phase that does not allow it.
    #[error("ActionSet {name} is {phase:?}, not Running")]
    NotRunning { name: String, phase: Phase },
    /// Anything else, with its context.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The metric label of this kind of error.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Invalid(_) => "invalid",
            Error::NotFound(_) => "not_found",
            Error::StillRunning(_) => "still_running",
            Error::NotRunning { .. } => "not_running",
            Error::Other(_) => "other",
        }
    }

    /// Whether the same reconcile could succeed later without anything changing.
    pub fn retryable(&self) -> bool {
        !matches!(self, Error::Invalid(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_label() {
        let e = Error::Invalid("spec.deadline: bad".into());
        assert_eq!(e.metric_label(), "invalid");
        assert!(!e.retryable());
        assert_eq!(
            Error::StillRunning("db/x".into()).metric_label(),
            "still_running"
        );
        assert!(Error::NotFound("Profile default".into()).retryable());
        assert_eq!(Error::Other(anyhow::anyhow!("x")).metric_label(), "other");
    }
}
