//! Errors with context, and checkpoints.

use crate::types::Error;
use crate::{ActionRequest, runtime};

/// `.context("restoring shop")` on a capability result: the message gains what was being
/// done, the kind of error stays (a `denied` is still a `denied`).
pub trait ErrorContext<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T, Error>;
}

impl<T> ErrorContext<T> for Result<T, Error> {
    fn context(self, what: impl std::fmt::Display) -> Result<T, Error> {
        self.map_err(|e| {
            let p = |s: String| format!("{what}: {s}");
            match e {
                Error::Denied(s) => Error::Denied(p(s)),
                Error::NotFound(s) => Error::NotFound(p(s)),
                Error::InvalidArgument(s) => Error::InvalidArgument(p(s)),
                Error::Conflict(s) => Error::Conflict(p(s)),
                Error::Timeout(s) => Error::Timeout(p(s)),
                Error::Cancelled => Error::Cancelled,
                Error::Unavailable(s) => Error::Unavailable(p(s)),
                Error::Limit(s) => Error::Limit(p(s)),
                Error::Remote(mut r) => {
                    r.message = p(r.message);
                    Error::Remote(r)
                }
                Error::Io(s) => Error::Io(p(s)),
                Error::Internal(s) => Error::Internal(p(s)),
            }
        })
    }
}

/// Durable step state: saved on the ActionSet, handed back when an interrupted action is
/// resumed.
pub mod checkpoint {
    use super::*;

    /// Save `state` (as JSON) on the ActionSet, replacing what was saved before.
    pub fn save<T: serde::Serialize>(state: &T) -> Result<(), Error> {
        let json = serde_json::to_string(state)
            .map_err(|e| Error::Internal(format!("checkpoint: {e}")))?;
        runtime::checkpoint(&json);
        Ok(())
    }

    /// The state a previous attempt saved, if this is a resumed action.
    pub fn load<T: serde::de::DeserializeOwned>(req: &ActionRequest) -> Result<Option<T>, Error> {
        req.checkpoint
            .as_deref()
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| Error::InvalidArgument(format!("checkpoint: {e}")))
            })
            .transpose()
    }
}
