//! Incremental backups: a restore point may build on another (`spec.base`), which may build
//! on another, down to a full one: a chain. A plugin whose backup says `incremental` in its
//! manifest gets the newest restore point of its workload (same Profile, same plugin) bound
//! read-only as `base-1`; restoring an incremental binds its bases as `base-1`, `base-2`, …,
//! each checked against its own manifest. Nothing may break a chain: a base is deleted only after every
//! restore point built on it, and retention keeps the bases of what it keeps.

use super::{ActionRequest, Coffer};
use crate::cap::location::BoundLocation;
use crate::model::{ActionKind, Kind, RestorePoint};
use crate::policy::retention::Verdict;
use crate::storage::{Location, Prefix};
use anyhow::{Result, bail};
use coffer_manifest::LocationAccess;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Links a chain may have, counting the full backup at its root.
pub const MAX_CHAIN: usize = 10_000;

/// The reason retention gives for a restore point it keeps as a base.
pub const KEPT_AS_BASE: &str = "base";

/// One restore point of the chain an action reads, bound read-only.
pub struct ChainLink {
    pub restore_point: RestorePoint,
    /// Its logical location name: `base-1` for the nearest base.
    pub location: String,
    pub bound: Arc<BoundLocation>,
}

/// The logical location name of the base `depth` links away (1: the nearest).
pub fn location_name(depth: usize) -> String {
    format!("base-{depth}")
}

fn time(rp: &RestorePoint) -> Option<jiff::Timestamp> {
    rp.spec
        .end_time
        .parse()
        .ok()
        .or_else(|| rp.spec.start_time.parse().ok())
}

impl Coffer {
    /// The newest restore point of `workload` in Profile `profile` made by `plugin`: what an
    /// incremental backup builds on.
    pub(super) fn newest_base(
        &self,
        workload: &str,
        profile: &str,
        plugin: &str,
    ) -> Result<Option<RestorePoint>> {
        Ok(self
            .catalog
            .list::<RestorePoint>(Kind::RestorePoint)?
            .into_iter()
            .filter(|rp| {
                rp.spec.workload == workload
                    && rp.spec.profile == profile
                    && rp.spec.plugin.name == plugin
            })
            .max_by_key(|rp| (time(rp), rp.name().to_string())))
    }

    /// Whether `workload`'s plugin makes incremental backups (what a stream needs).
    pub fn makes_incrementals(&self, workload: &str) -> Result<bool> {
        let w = self.workload(workload)?;
        let (blueprint, _) = self.blueprint(&w.spec.blueprint)?;
        let plugin = crate::plugin::PluginBytes::resolve(&blueprint.spec.plugin, blueprint.name())?;
        Ok(crate::plugin::inspect(&plugin)?
            .manifest
            .action("backup")
            .is_some_and(|a| a.incremental))
    }

    /// Restore points in `name`'s chain (itself included) and the objects they hold, as
    /// the catalog records them.
    pub fn chain_size(&self, name: &str) -> Result<(u32, u64)> {
        let (mut links, mut objects) = (0, 0);
        let mut next = Some(name.to_string());
        while let Some(rp) = next {
            if links as usize >= MAX_CHAIN {
                break;
            }
            let Some(r) = self.catalog.get::<RestorePoint>(Kind::RestorePoint, &rp)? else {
                break;
            };
            links += 1;
            objects += r.spec.objects.len() as u64;
            next = r.spec.base;
        }
        Ok((links, objects))
    }

    /// The restore points built on `name`.
    pub fn dependents(&self, name: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .catalog
            .list::<RestorePoint>(Kind::RestorePoint)?
            .into_iter()
            .filter(|rp| rp.spec.base.as_deref() == Some(name))
            .map(|rp| rp.name().to_string())
            .collect();
        out.sort();
        Ok(out)
    }

    /// What an action reads besides its own restore point, bound (see [`ChainLink`]); and
    /// a delete that would break a chain refused.
    pub(super) async fn chain_for(
        &self,
        req: &ActionRequest,
        input: &Option<RestorePoint>,
        manifest: &coffer_manifest::Manifest,
        workload: &str,
        profile: &str,
        location: &Location,
    ) -> Result<Vec<ChainLink>> {
        let local = req.cluster.is_none();
        let supported = manifest.action("backup").is_some_and(|a| a.incremental);
        if req.incremental {
            if !local {
                bail!(
                    "--incremental is for local mode for now: on a cluster every backup is full; leave it out"
                );
            }
            if req.action != ActionKind::Backup {
                bail!("only a backup can be incremental; leave out --incremental");
            }
            if !supported {
                bail!(
                    "plugin {} makes full backups only (its backup action does not say `incremental` in its manifest); leave out --incremental",
                    manifest.name
                );
            }
        }
        // A Policy's fullEvery and its stream ask for incrementals where the plugin makes
        // them.
        let scheduled = (req.full_every.is_some() || req.stream) && local && supported;
        if req.action == ActionKind::Backup && (req.incremental || scheduled) {
            let Some(base) = self.newest_base(workload, profile, &manifest.name)? else {
                tracing::warn!(
                    workload,
                    profile,
                    "no earlier restore point of this workload in this Profile to build on: this backup is full"
                );
                return Ok(Vec::new());
            };
            // Only the base is bound (and read): the chain below it is checked when it is
            // restored, so a stream's links do not grow dearer as its chain grows.
            let (links, _) = self.chain_size(base.name())?;
            if let Some(n) = req.full_every
                && !req.incremental
                && links >= n
            {
                tracing::info!(
                    links,
                    full_every = n,
                    "a full backup (the Policy's fullEvery)"
                );
                return Ok(Vec::new());
            }
            let name = base.name().to_string();
            let base = match self.authenticate(base, location, None, "restore").await {
                Ok(base) => base,
                // A schedule goes on with a full backup; an explicit --incremental fails.
                Err(e) if !req.incremental => {
                    tracing::warn!(base = %name, error = %format!("{e:#}"), "the newest restore point cannot be built on: this backup is full");
                    return Ok(Vec::new());
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "the incremental backup of {workload} builds on {name}, which cannot be read; back up without --incremental"
                    )));
                }
            };
            tracing::info!(base = %name, links = links + 1, "incremental backup");
            return Ok(bind(vec![base], location, location.zstd_level));
        }
        let Some(rp) = input else {
            return Ok(Vec::new());
        };
        if req.action == ActionKind::Delete {
            if local {
                let built_on = self.dependents(rp.name())?;
                if !built_on.is_empty() {
                    bail!(
                        "RestorePoint {} is the base of {}: an incremental backup cannot be restored without it. Delete {} first (a chain is deleted from its newest end)",
                        rp.name(),
                        built_on.join(", "),
                        if built_on.len() == 1 {
                            "that one"
                        } else {
                            "those"
                        }
                    );
                }
            }
            // A delete removes only the restore point's own objects.
            return Ok(Vec::new());
        }
        let Some(base) = &rp.spec.base else {
            return Ok(Vec::new());
        };
        if !local {
            bail!(
                "RestorePoint {} is an incremental backup; on a cluster only full ones are restored for now",
                rp.name()
            );
        }
        let first = self
            .catalog
            .get::<RestorePoint>(Kind::RestorePoint, base)?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "RestorePoint {} builds on {base}, which is gone: the chain is broken and cannot be restored",
                    rp.name()
                )
            })?;
        let of = format!("RestorePoint {}", rp.name());
        let chain = self.chain_from(first, location, &of, rp).await?;
        Ok(bind(chain, location, location.zstd_level))
    }

    /// `first` and its bases down to the full backup, each checked against its own signed
    /// manifest, nearest first. `of` says what they are read for; `own` is the restore
    /// point they are the bases of: every link must be of its workload, Profile and plugin.
    async fn chain_from(
        &self,
        first: RestorePoint,
        loc: &Location,
        of: &str,
        own: &RestorePoint,
    ) -> Result<Vec<RestorePoint>> {
        let (workload, profile, plugin) = (
            own.spec.workload.clone(),
            own.spec.profile.clone(),
            own.spec.plugin.name.clone(),
        );
        let mut chain: Vec<RestorePoint> = Vec::new();
        let mut seen = BTreeSet::from([own.name().to_string()]);
        let mut next = Some(first);
        while let Some(rp) = next {
            let name = rp.name().to_string();
            if !seen.insert(name.clone()) || chain.len() >= MAX_CHAIN {
                bail!(
                    "{of}: its chain of bases loops or is longer than {MAX_CHAIN} at {name}; make a full backup"
                );
            }
            if rp.spec.workload != workload
                || rp.spec.profile != profile
                || rp.spec.plugin.name != plugin
            {
                bail!(
                    "{of}: its base {name} is of workload {} in Profile {} by plugin {}, not of {workload} in {profile} by {plugin}; a chain stays in one workload, Profile and plugin",
                    rp.spec.workload,
                    rp.spec.profile,
                    rp.spec.plugin.name
                );
            }
            let rp = self
                .authenticate(rp, loc, None, "restore")
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{of} builds on {name}, which cannot be read: {e:#}")
                })?;
            next = match &rp.spec.base {
                None => None,
                Some(b) => Some(
                    self.catalog
                        .get::<RestorePoint>(Kind::RestorePoint, b)?
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "{of} builds on {b} (the base of {name}), which is gone: the chain is broken and cannot be restored"
                            )
                        })?,
                ),
            };
            chain.push(rp);
        }
        Ok(chain)
    }
}

/// The chain bound read-only, each link verified against its own manifest's objects.
pub fn bind(
    chain: Vec<RestorePoint>,
    location: &Location,
    zstd_level: Option<i32>,
) -> Vec<ChainLink> {
    chain
        .into_iter()
        .enumerate()
        .map(|(i, rp)| {
            let bound = Arc::new(BoundLocation::new(
                Prefix {
                    profile: rp.spec.profile.clone(),
                    store: location.store.clone(),
                    root: rp.spec.prefix.clone(),
                    encryption: location.encryption.clone(),
                    parts: location.parts.clone(),
                },
                vec![LocationAccess::Read],
                zstd_level,
                rp.spec
                    .objects
                    .iter()
                    .map(|o| (o.key.clone(), o.clone()))
                    .collect(),
            ));
            ChainLink {
                restore_point: rp,
                location: location_name(i + 1),
                bound,
            }
        })
        .collect()
}

/// Retention never breaks a chain: a restore point it would delete is kept while any
/// restore point that stays (judged here or not: `all` is every restore point) builds on
/// it. Deleting what is left newest first then removes each chain from its newest end.
pub fn keep_bases(judged: &mut [(RestorePoint, Verdict)], all: &[RestorePoint]) {
    let mut going: BTreeSet<String> = judged
        .iter()
        .filter(|(_, v)| !v.keep)
        .map(|(rp, _)| rp.name().to_string())
        .collect();
    loop {
        let mut changed = false;
        for (rp, v) in judged.iter_mut().filter(|(_, v)| !v.keep) {
            let needed = all
                .iter()
                .any(|o| o.spec.base.as_deref() == Some(rp.name()) && !going.contains(o.name()));
            if needed {
                v.keep = true;
                v.reasons.push(KEPT_AS_BASE);
                going.remove(rp.name());
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(name: &str, base: Option<&str>) -> RestorePoint {
        let mut rp = crate::model::restorepoint::sample("w", name);
        rp.spec.base = base.map(str::to_string);
        rp
    }

    fn verdict(index: usize, keep: bool) -> Verdict {
        Verdict {
            index,
            keep,
            reasons: vec![],
        }
    }

    #[test]
    fn retention_keeps_every_base_of_what_stays_and_lets_whole_chains_go() {
        // full-a <- inc-a1 <- inc-a2 (kept), full-b <- inc-b1 (both expire), and full-c,
        // expiring, but the base of a manual incremental retention does not judge.
        let all = vec![
            rp("full-a", None),
            rp("inc-a1", Some("full-a")),
            rp("inc-a2", Some("inc-a1")),
            rp("full-b", None),
            rp("inc-b1", Some("full-b")),
            rp("full-c", None),
            rp("manual-c1", Some("full-c")),
        ];
        let keep = ["inc-a2"];
        let mut judged: Vec<(RestorePoint, Verdict)> = all
            .iter()
            .filter(|r| r.name() != "manual-c1")
            .enumerate()
            .map(|(i, r)| (r.clone(), verdict(i, keep.contains(&r.name()))))
            .collect();
        keep_bases(&mut judged, &all);
        let kept: Vec<(&str, &Vec<&str>)> = judged
            .iter()
            .filter(|(_, v)| v.keep)
            .map(|(r, v)| (r.name(), &v.reasons))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("full-a", &vec![KEPT_AS_BASE]),
                ("inc-a1", &vec![KEPT_AS_BASE]),
                ("inc-a2", &vec![]),
                ("full-c", &vec![KEPT_AS_BASE]),
            ]
        );
    }
}
