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

/// What to do when the API server refused the daemon in namespace `ns` somewhere in `e`'s
/// causes: most often the namespace has not opted in.
pub fn refusal_hint(e: &anyhow::Error, ns: &str) -> Option<String> {
    let refused = e.chain().any(
        |c| matches!(c.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 403),
    );
    refused.then(|| {
        format!(
            "coffer acts in namespace {ns} only once it opts in: bind coffer's ServiceAccount \
             to ClusterRole coffer-namespace there (deploy/examples/namespace.yaml)"
        )
    })
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

    #[test]
    fn a_refusal_names_the_opt_in_and_other_errors_do_not() {
        let status = |code| {
            kube::Error::Api(
                kube::core::Status::failure("secrets \"x\" is forbidden", "Forbidden")
                    .with_code(code)
                    .boxed(),
            )
        };
        let e = anyhow::Error::new(status(403)).context("reading Secret shop/x");
        let hint = refusal_hint(&e, "shop").expect("a hint");
        assert!(hint.contains("namespace shop") && hint.contains("coffer-namespace"));
        let e = anyhow::Error::new(status(404)).context("reading Secret shop/x");
        assert_eq!(refusal_hint(&e, "shop"), None);
    }
}
