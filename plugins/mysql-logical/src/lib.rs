//! mysql-logical: logical MariaDB / MySQL backups of the server the Workload or the params
//! name; the dump and restore are `coffer_logical::mysql`.
//!
//! backup  = each user database dumped with `mariadb-dump --single-transaction --routines
//!           --triggers --events` (a consistent InnoDB snapshot per database, no global lock),
//!           streamed by the host into the location; optionally users and grants.
//! restore = users and grants first, then each database replayed into a new database and
//!           swapped with the existing one only once complete: a restore that fails leaves the
//!           original as it was (`replace: true` drops and replays in place instead).
//! delete  = remove the restore point's objects.

use coffer_logical::mysql::{self, BackupParams, RestoreParams};
use coffer_plugin_sdk::{self as sdk, Action, ActionOutput, ActionRequest, Error};

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        mysql::check_backup(p)
    }

    fn run(p: BackupParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        mysql::backup(p)
    }
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        mysql::check_restore(p, req)
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        mysql::restore(p, req)
    }
}
