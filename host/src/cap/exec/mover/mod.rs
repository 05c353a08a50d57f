//! Movers: the host's data path (compress, encrypt, hash, upload) run beside the workload.
//!
//! On Kubernetes every byte a plugin's command writes to stdout would otherwise cross the
//! API server's exec connection and the daemon. For a command whose output the plugin
//! stores in the location (`exec.spawn` then `location.put` of its stdout), the pod backend
//! may instead start a mover pod next to the subject (same node, the subject container's
//! image and environment, this binary copied in by an init container) and run
//! `coffer mover run` there through one small exec: the command runs in the mover, its
//! output goes through [`crate::storage::pipeline::pump`] there, and its parts are `PUT` to
//! URLs the daemon pre-signs one at a time ([`crate::storage::presign`]). The exec carries
//! only this module's control messages; the daemon completes the upload (or aborts it)
//! and records the object exactly as if it had uploaded it.
//!
//! The protocol, one JSON object per line:
//! - daemon → mover, first: a [`Job`]; then [`ToMover`] answers.
//! - mover → daemon: [`FromMover`] — `need` a part's URL, `progress`, and last `done` or
//!   `failed`.
//!
//! The mover holds no credential: a part URL writes one part of one upload for a few
//! minutes. The daemon never trusts the mover beyond the object it was asked to write:
//! the key is the daemon's, the part numbers are bounded, lines are bounded, and the stored
//! size it reports is checked against the store before anything is recorded.

mod drive;
mod worker;

pub use drive::{MoverDone, drive};
pub use worker::{idle, install, run};

use crate::storage::pipeline::Written;
use serde::{Deserialize, Serialize};

/// The longest control line either side accepts.
pub const MAX_LINE: usize = 64 << 10;
/// S3's limit on the parts of one upload.
pub const MAX_PARTS: usize = 10_000;

/// What to run and how to store its output: the first line the daemon writes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// The command, as the argument policy let it through.
    pub argv: Vec<String>,
    /// Its environment (the plugin's variables and secret values); the mover container's
    /// own variables win, as in the workload. Never logged.
    pub env: Vec<(String, String)>,
    pub zstd_level: Option<i32>,
    /// age recipients to encrypt to; none: stored as it is.
    pub recipients: Vec<String>,
    /// The Profile, for messages.
    pub profile: String,
    /// Bytes of the command's stderr to send back (the end of it).
    pub stderr_tail: usize,
    /// CA certificates (PEM) to trust besides the system's when putting parts (the
    /// Profile's `spec.caFile`).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("argv", &self.argv)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The daemon's answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ToMover {
    /// Where to `PUT` part `part`.
    Url { part: usize, url: String },
    /// Part `part` cannot be written: the upload stops.
    Refused { part: usize, error: String },
}

/// What the mover says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum FromMover {
    /// A URL for part `part` (from 1), please.
    Need { part: usize },
    /// Bytes of output read so far (before compression).
    Progress { bytes: u64 },
    /// The output is uploaded (parts in order, by ETag) and the command has ended.
    Done {
        written: WrittenMsg,
        etags: Vec<String>,
        exit: ExitMsg,
    },
    /// The upload failed; the command's end, when known.
    Failed {
        error: String,
        exit: Option<ExitMsg>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WrittenMsg {
    pub size: u64,
    pub stored_size: u64,
    pub sha256: String,
}

impl From<Written> for WrittenMsg {
    fn from(w: Written) -> WrittenMsg {
        WrittenMsg {
            size: w.size,
            stored_size: w.stored_size,
            sha256: w.sha256,
        }
    }
}

/// How the command ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExitMsg {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The end of its stderr, base64.
    pub stderr: String,
}
