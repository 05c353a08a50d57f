//! Verifying a restore point beyond its objects: a plugin whose data lives elsewhere
//! (pgBackRest's repository) checks that data itself, with an action `verify` run on the
//! RestorePoint (`coffer verify`, the dashboard's Verify).

use super::Coffer;
use crate::model::RestorePoint;
use anyhow::{Context, Result};

impl Coffer {
    /// Whether the RestorePoint's plugin checks its own data (it has an action `verify`).
    pub fn plugin_verifies(&self, rp: &RestorePoint) -> Result<bool> {
        let (blueprint, _) = self
            .blueprint(&rp.spec.blueprint)
            .with_context(|| format!("RestorePoint {}: its Blueprint", rp.name()))?;
        let plugin = crate::plugin::PluginBytes::resolve(&blueprint.spec.plugin, blueprint.name())?;
        Ok(crate::plugin::inspect(&plugin)?
            .manifest
            .action("verify")
            .is_some())
    }
}
