//! One tick of a Policy on a cluster: a sealed backup ActionSet per selected workload,
//! created in the workload's namespace under a name made of the Policy, the workload and
//! the tick — so a second leader (after a failover, or one that resumes a tick its
//! predecessor started) finds it already there and never makes a second — then, once they
//! have ended, retention over each workload's sealed restore points of this Policy, each
//! deletion an ActionSet of its own. The daemon's controller runs them all like any other.

use super::seal;
use super::select::{self, Found};
use crate::k8s::kinds::{self, ActionSetResource, RestorePointResource, status};
use crate::k8s::run::ClusterCtx;
use crate::model::{ActionSetSpec, Phase, Policy};
use crate::policy::retention;
use crate::policy::{POLICY_LABEL, REASON_LABEL, SEAL_ANNOTATION, TICK_ANNOTATION};
use crate::scheduler::tick::{Outcome, TickReport, restore_point_time};
use crate::storage::manifest::ManifestKey;
use anyhow::{Context, Result};
use jiff::Timestamp;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;

/// The label that groups a tick's ActionSets (`20261203-110000`), so one list finds them.
pub const TICK_LABEL: &str = "coffer.dev/tick";

/// How often a tick looks whether its ActionSets have ended.
const POLL: Duration = Duration::from_secs(2);

fn compact(tick: Timestamp) -> String {
    tick.strftime("%Y%m%d-%H%M%S").to_string()
}

/// A resource name of at most 253 characters: `name`, or its head and a digest of all of it.
fn bounded(name: String) -> String {
    if name.len() <= 253 {
        return name;
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}",
        name[..240].trim_end_matches(['-', '.']),
        &digest[..12]
    )
}

/// The backup ActionSet's name of `policy`'s `tick` of `w`.
pub fn backup_name(policy: &str, w: &Found, tick: Timestamp) -> String {
    bounded(format!(
        "policy-{policy}-{}-{}-{}",
        w.info.kind.to_ascii_lowercase(),
        w.info.name,
        compact(tick)
    ))
}

pub struct Tick<'a> {
    pub cx: &'a ClusterCtx,
    pub key: &'a ManifestKey,
    pub policy: &'a Policy,
    pub tick: Timestamp,
}

impl Tick<'_> {
    pub async fn run(&self) -> Result<TickReport> {
        if self.policy.spec.full_every.is_some() || self.policy.spec.stream.is_some() {
            anyhow::bail!(
                "spec.fullEvery and spec.stream: incremental backups are for local mode for now; on a cluster every backup is full, so leave them out"
            );
        }
        let all = select::workloads(&self.cx.client, &self.cx.config_ns).await?;
        let chosen = select::selected(self.policy, &all).map_err(anyhow::Error::msg)?;
        let mut report = TickReport {
            policy: self.policy.name().to_string(),
            tick: self.tick.to_string(),
            backups: Vec::new(),
            deleted: Vec::new(),
        };
        let mut pending = Vec::new();
        for w in &chosen {
            let name = backup_name(self.policy.name(), w, self.tick);
            let spec = ActionSetSpec {
                action: "backup".into(),
                workload: w.subject(),
                blueprint: String::new(),
                profile: self.policy.spec.profile.clone().unwrap_or_default(),
                restore_point: None,
                params: if self.policy.spec.params.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::to_value(&self.policy.spec.params)?
                },
                cancel: false,
                deadline: None,
                target_namespace: None,
            };
            let o = self.create(&w.info.namespace, &name, spec, &[]).await;
            report.backups.push(o.clone());
            if o.error.is_none() {
                pending.push((w.info.namespace.clone(), name));
            }
        }
        self.wait(&mut report.backups, &pending).await?;
        // Retention, per workload, over this Policy's sealed restore points only.
        let rules = crate::policy::rules(&self.policy.spec).map_err(anyhow::Error::msg)?;
        let mut deletions = Vec::new();
        let mut by_ns: BTreeMap<String, Vec<RestorePointResource>> = BTreeMap::new();
        for w in &chosen {
            let ns = &w.info.namespace;
            if !by_ns.contains_key(ns) {
                let items = Api::<RestorePointResource>::namespaced(self.cx.client.clone(), ns)
                    .list(
                        &ListParams::default()
                            .labels(&format!("{POLICY_LABEL}={}", self.policy.name())),
                    )
                    .await
                    .with_context(|| format!("listing RestorePoints in namespace {ns}"))?
                    .items;
                by_ns.insert(ns.clone(), items);
            }
            for rp in self.doomed(w, &by_ns[ns], &rules) {
                let name = bounded(format!("retention-{rp}"));
                let spec = ActionSetSpec {
                    action: "delete".into(),
                    workload: w.subject(),
                    blueprint: String::new(),
                    profile: String::new(),
                    restore_point: Some(rp.clone()),
                    params: serde_json::Value::Null,
                    cancel: false,
                    deadline: None,
                    target_namespace: None,
                };
                let mut o = self
                    .create(ns, &name, spec, &[(REASON_LABEL, "retention")])
                    .await;
                o.restore_point = Some(rp);
                report.deleted.push(o.clone());
                if o.error.is_none() {
                    deletions.push((ns.clone(), name));
                }
            }
        }
        self.wait(&mut report.deleted, &deletions).await?;
        Ok(report)
    }

    /// The restore points of `w` retention deletes now.
    fn doomed(
        &self,
        w: &Found,
        rps: &[RestorePointResource],
        rules: &crate::policy::PolicyRules,
    ) -> Vec<String> {
        let mut mine: Vec<(Timestamp, String)> = rps
            .iter()
            .filter(|rp| {
                rp.spec.workload == w.subject()
                    && seal::restore_point_is(self.key, rp, &w.info.namespace, self.policy.name())
            })
            .filter_map(|rp| {
                let t = restore_point_time(&kinds::restore_point(rp))?;
                Some((t, rp.metadata.name.clone().unwrap_or_default()))
            })
            .collect();
        mine.sort();
        let times: Vec<Timestamp> = mine.iter().map(|(t, _)| *t).collect();
        let verdicts = retention::apply(&times, rules.keep, &rules.timezone);
        mine.into_iter()
            .zip(verdicts)
            .filter(|(_, v)| !v.keep)
            .map(|((_, n), _)| n)
            .collect()
    }

    /// Create the sealed ActionSet `ns/name`. One already there is this tick's if its seal
    /// holds (a leader before this one made it); anything else by that name is not.
    async fn create(
        &self,
        ns: &str,
        name: &str,
        spec: ActionSetSpec,
        labels: &[(&str, &str)],
    ) -> Outcome {
        let policy = self.policy.name();
        let tick = self.tick.to_string();
        let mut o = Outcome {
            workload: format!("{ns}/{}", spec.workload),
            action_set: name.to_string(),
            result: "Failed".into(),
            restore_point: None,
            error: None,
        };
        let seal = seal::action_set(self.key, ns, name, policy, &tick, &spec.workload);
        let mut l: BTreeMap<String, String> = BTreeMap::from([
            (POLICY_LABEL.to_string(), policy.to_string()),
            (TICK_LABEL.to_string(), compact(self.tick)),
        ]);
        l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let set = ActionSetResource {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: Some(l),
                annotations: Some(BTreeMap::from([
                    (TICK_ANNOTATION.to_string(), tick.clone()),
                    (SEAL_ANNOTATION.to_string(), seal),
                ])),
                ..Default::default()
            },
            spec,
            status: None,
        };
        let api: Api<ActionSetResource> = Api::namespaced(self.cx.client.clone(), ns);
        match api.create(&PostParams::default(), &set).await {
            Ok(_) => {
                tracing::info!(policy, actionset = %format!("{ns}/{name}"), "tick: ActionSet created");
                o.result = "Created".into();
            }
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(name).await {
                Ok(Some(there))
                    if seal::marks(self.key, &there).is_ok_and(|(l, _)| !l.is_empty()) =>
                {
                    o.result = "AlreadyRan".into();
                }
                Ok(_) => {
                    o.error = Some(format!(
                        "ActionSet {ns}/{name} exists and was not made by this Policy's scheduler; the tick's backup cannot run under its name"
                    ))
                }
                Err(e) => o.error = Some(format!("reading ActionSet {ns}/{name}: {e}")),
            },
            Err(e) => o.error = Some(format!("creating ActionSet {ns}/{name}: {e}")),
        }
        o
    }

    /// Wait until every ActionSet of `names` has ended; record how in `outcomes`. One list
    /// (by the Policy's and the tick's labels) per look, however many there are.
    async fn wait(&self, outcomes: &mut [Outcome], names: &[(String, String)]) -> Result<()> {
        let selector = format!(
            "{POLICY_LABEL}={},{TICK_LABEL}={}",
            self.policy.name(),
            compact(self.tick)
        );
        let mut left: Vec<(String, String)> = names.to_vec();
        while !left.is_empty() {
            let sets = Api::<ActionSetResource>::all(self.cx.client.clone())
                .list(&ListParams::default().labels(&selector))
                .await
                .context("listing the tick's ActionSets")?
                .items;
            let mut found: BTreeMap<(String, String), &ActionSetResource> = BTreeMap::new();
            for s in &sets {
                let k = (
                    s.metadata.namespace.clone().unwrap_or_default(),
                    s.metadata.name.clone().unwrap_or_default(),
                );
                found.insert(k, s);
            }
            left.retain(|(ns, name)| {
                let Some(o) = outcomes
                    .iter_mut()
                    .find(|o| o.action_set == *name && o.workload.starts_with(&format!("{ns}/")))
                else {
                    return false;
                };
                match found.get(&(ns.clone(), name.clone())) {
                    None => {
                        o.result = "Failed".into();
                        o.error = Some("the ActionSet was deleted before it ended".into());
                        false
                    }
                    Some(s) => {
                        let st = status(s);
                        if !matches!(st.phase, Phase::Completed | Phase::Failed) {
                            return true;
                        }
                        o.result = format!("{:?}", st.phase);
                        o.restore_point = o.restore_point.take().or(st.restore_point.clone());
                        if st.phase == Phase::Failed {
                            o.error = st.error.clone();
                        }
                        false
                    }
                }
            });
            if !left.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_within_what_the_api_server_takes() {
        let short = bounded("policy-gold-statefulset-pg-20260101-000000".into());
        assert_eq!(short, "policy-gold-statefulset-pg-20260101-000000");
        let long = format!(
            "policy-gold-statefulset-{}-20260101-000000",
            "a".repeat(253)
        );
        let b = bounded(long.clone());
        assert!(b.len() <= 253, "{b}");
        assert!(
            b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{b}"
        );
        // Two long names that differ only at the end stay apart.
        assert_ne!(b, bounded(long.replace("000000", "010000")));
    }
}
