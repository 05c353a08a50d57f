//! Removing what a failed backup left under its own prefix: objects and open multipart
//! uploads. Every path that fails a backup goes through here: the run itself, recovery of a
//! runner that died, the daemon settling a lost one, and the later retries. Never called
//! once a backup's manifest is written (then it is a complete backup and is kept).

use crate::storage::Location;

/// What the removal came to.
#[derive(Debug)]
pub enum Cleanup {
    /// This many objects were removed.
    Removed(usize),
    /// It failed (the text says why); what is left is still there.
    Pending(String),
}

/// Remove everything under `prefix` of `location` (the Profile opened, or why it could
/// not be).
pub async fn remove_partial_backup(location: anyhow::Result<Location>, prefix: &str) -> Cleanup {
    let removed = match location {
        Ok(loc) => loc.remove_prefix(prefix).await,
        Err(e) => Err(e),
    };
    match removed {
        Ok(n) => {
            if n > 0 {
                tracing::info!(objects = n, prefix, "removed the partial backup");
            }
            Cleanup::Removed(n)
        }
        Err(e) => Cleanup::Pending(format!("{e:#}")),
    }
}

impl Cleanup {
    pub fn pending(&self) -> bool {
        matches!(self, Cleanup::Pending(_))
    }

    /// What is added to the failure's reason; `then` says what happens to what is left
    /// (who tries again, or how to remove it by hand).
    pub fn note(&self, prefix: &str, then: &str) -> String {
        match self {
            Cleanup::Removed(0) => String::new(),
            Cleanup::Removed(n) => format!("; its {n} partial object(s) were removed"),
            Cleanup::Pending(e) => {
                format!(
                    "; its partial objects under {prefix} could not be removed yet: {e}; {then}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_says_what_happened() {
        assert_eq!(Cleanup::Removed(0).note("p", "x"), "");
        assert_eq!(
            Cleanup::Removed(3).note("p", "x"),
            "; its 3 partial object(s) were removed"
        );
        let pending = Cleanup::Pending("503 Slow Down".into());
        assert!(pending.pending());
        assert_eq!(
            pending.note("restorepoints/a/b", "the next coffer command tries again"),
            "; its partial objects under restorepoints/a/b could not be removed yet: 503 Slow Down; the next coffer command tries again"
        );
    }
}
