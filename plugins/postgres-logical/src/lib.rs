//! postgres-logical: logical PostgreSQL backups of the server the Workload names (PGHOST,
//! PGPORT in its env, or the local socket); the dump and restore are `coffer_logical::postgres`.
//!
//! backup  = `pg_dumpall --globals-only` (roles, tablespaces) + `pg_dump -Fc -Z0` of each
//!           database, each streamed by the host into the location with zstd.
//! restore = replay globals, then for each database `pg_restore` into a new database and swap
//!           it with the existing one in one transaction: a restore that fails leaves the
//!           original as it was (`replace: true` drops and recreates in place instead).
//! delete  = remove the restore point's objects.

use coffer_logical::postgres::{self, BackupParams, Conn, RestoreParams};
use coffer_plugin_sdk::{self as sdk, Action, ActionOutput, ActionRequest, Error};

pub struct Backup;
pub struct Restore;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, sdk::DeleteArtifacts]);

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = BackupParams;

    fn check(p: &BackupParams, _: &ActionRequest) -> Result<(), Vec<String>> {
        postgres::check_backup(p)
    }

    fn run(p: BackupParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        postgres::backup(p, &Conn::default())
    }
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;

    fn check(p: &RestoreParams, req: &ActionRequest) -> Result<(), Vec<String>> {
        postgres::check_restore(p, req)
    }

    fn run(p: RestoreParams, req: &ActionRequest) -> Result<ActionOutput, Error> {
        postgres::restore(p, req, &Conn::default())
    }
}
