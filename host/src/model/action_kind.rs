//! What an action is, and the rules that follow from it. The ActionSet's `spec.action`
//! stays the K10 name (`backup`, `restore`, `delete`, a hook, or one a plugin defines);
//! everything that depends on the kind asks this type instead of comparing strings.

use coffer_manifest::LocationAccess;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Writes a new restore point.
    Backup,
    /// Reads a restore point back into the workload.
    Restore,
    /// Removes a restore point's objects, then the restore point.
    Delete,
    /// A hook (`backupPrehook`, …) or an action the plugin defines: no restore point of its
    /// own; it may read one it is given.
    Other(String),
}

impl ActionKind {
    pub fn parse(name: &str) -> ActionKind {
        match name {
            "backup" => ActionKind::Backup,
            "restore" => ActionKind::Restore,
            "delete" => ActionKind::Delete,
            other => ActionKind::Other(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ActionKind::Backup => "backup",
            ActionKind::Restore => "restore",
            ActionKind::Delete => "delete",
            ActionKind::Other(n) => n,
        }
    }

    /// Whether it acts on an existing restore point (which it must be given).
    pub fn needs_restore_point(&self) -> bool {
        matches!(self, ActionKind::Restore | ActionKind::Delete)
    }

    /// Whether a successful run produces a restore point.
    pub fn makes_restore_point(&self) -> bool {
        matches!(self, ActionKind::Backup)
    }

    /// What it may do at its location (the grant may allow less, never more): a backup
    /// writes its new restore point (and removes what it no longer wants there), a restore
    /// only reads, a delete reads and deletes; others read the restore point they are
    /// given, if any.
    pub fn location_access(&self, has_restore_point: bool) -> Vec<LocationAccess> {
        use LocationAccess::*;
        match self {
            ActionKind::Backup => vec![Read, Write, Delete],
            ActionKind::Restore => vec![Read],
            ActionKind::Delete => vec![Read, Delete],
            ActionKind::Other(_) if has_restore_point => vec![Read],
            ActionKind::Other(_) => vec![],
        }
    }

    /// K10's defaults: backup 45 min, restore 10 h, delete 45 min, hooks 20 min.
    pub fn default_timeout(&self) -> Duration {
        let minutes = match self {
            ActionKind::Backup => 45,
            ActionKind::Restore => 600,
            ActionKind::Delete => 45,
            ActionKind::Other(_) => 20,
        };
        Duration::from_secs(minutes * 60)
    }

    /// Whether a failed run's objects are removed: a backup's partial objects are (never
    /// once its manifest is written); a restore's target is the plugin's to keep intact,
    /// and a delete that failed leaves the restore point for another try.
    pub fn removes_objects_on_failure(&self) -> bool {
        matches!(self, ActionKind::Backup)
    }
}

impl From<&str> for ActionKind {
    fn from(name: &str) -> Self {
        ActionKind::parse(name)
    }
}

/// A backup: what `coffer backup` asks for, and what a request names when it says nothing.
impl Default for ActionKind {
    fn default() -> Self {
        ActionKind::Backup
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocationAccess::*;

    #[test]
    fn each_kind_carries_its_rules() {
        for (name, rp_in, access, minutes, makes, cleans) in [
            ("backup", false, vec![Read, Write, Delete], 45, true, true),
            ("restore", true, vec![Read], 600, false, false),
            ("delete", true, vec![Read, Delete], 45, false, false),
            ("backupPrehook", false, vec![], 20, false, false),
            ("verify", true, vec![Read], 20, false, false),
        ] {
            let k = ActionKind::parse(name);
            assert_eq!(k.name(), name);
            assert_eq!(
                k.needs_restore_point(),
                name == "restore" || name == "delete"
            );
            assert_eq!(k.location_access(rp_in), access, "{name}");
            assert_eq!(
                k.default_timeout(),
                Duration::from_secs(minutes * 60),
                "{name}"
            );
            assert_eq!(k.makes_restore_point(), makes, "{name}");
            assert_eq!(k.removes_objects_on_failure(), cleans, "{name}");
        }
    }
}
