//! Where a running action keeps its record. The engine writes through [`ActionRecord`]:
//! the local catalog ([`CatalogRecord`], SQLite) in local mode, the ActionSet and
//! RestorePoint resources on Kubernetes (`k8s::record`). Every write after the start is a
//! compare-and-set on the action still being this run's: a runner settled as lost by another
//! process cannot overwrite what that process decided.

use crate::catalog::Catalog;
use crate::model::{ActionSet, Kind, RestorePoint};
use anyhow::Result;
use std::sync::Arc;

/// A change to an ActionSet (its status, mostly).
pub type Change<'a> = &'a (dyn Fn(&mut ActionSet) + Send + Sync);

#[async_trait::async_trait]
pub trait ActionRecord: Send + Sync {
    /// Record the action as started: Running, owned by this run.
    async fn started(&self, set: &ActionSet) -> Result<()>;

    /// Apply `change` (progress, heartbeat, the outcome). An error when the action is no
    /// longer this run's ([`crate::catalog::NotOurs`]) or the record cannot be written.
    async fn update(&self, change: Change<'_>) -> Result<()>;

    /// Whether the action is still this run's (a backup commits only then).
    async fn owned(&self) -> Result<bool>;

    /// A completed backup: its RestorePoint and its Completed ActionSet `set`, both or
    /// neither recorded.
    async fn commit_backup(&self, rp: &RestorePoint, set: &ActionSet) -> Result<()>;

    /// A deleted restore point leaves the record.
    async fn remove_restore_point(&self, rp: &RestorePoint) -> Result<()>;

    /// The ActionSet as recorded now.
    async fn current(&self) -> Result<ActionSet>;
}

/// Local mode: the SQLite catalog; writes compare-and-set on this run's owner token.
pub struct CatalogRecord {
    pub catalog: Arc<Catalog>,
    pub name: String,
    pub owner_token: String,
}

#[async_trait::async_trait]
impl ActionRecord for CatalogRecord {
    async fn started(&self, set: &ActionSet) -> Result<()> {
        self.catalog.insert_action_set(set)
    }

    async fn update(&self, change: Change<'_>) -> Result<()> {
        let mut a = self.current().await?;
        change(&mut a);
        self.catalog.update_action_set(&a, Some(&self.owner_token))
    }

    async fn owned(&self) -> Result<bool> {
        self.catalog.owns(&self.name, &self.owner_token)
    }

    async fn commit_backup(&self, rp: &RestorePoint, set: &ActionSet) -> Result<()> {
        self.catalog.record_backup(rp, set, Some(&self.owner_token))
    }

    async fn remove_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        self.catalog.delete(Kind::RestorePoint, rp.name())?;
        Ok(())
    }

    async fn current(&self) -> Result<ActionSet> {
        self.catalog
            .action_set(&self.name)?
            .ok_or_else(|| anyhow::anyhow!("ActionSet {} not found", self.name))
    }
}
