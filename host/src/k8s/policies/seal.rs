//! Seals on a Policy's ActionSets and restore points (see [`crate::policy::SEAL_ANNOTATION`]):
//! a tenant who can write ActionSets and RestorePoints in its namespace cannot make one pass
//! for a Policy's, so retention never counts (or deletes on account of) a forged restore
//! point, and compliance never reports a workload protected by one.

use crate::model::{ActionSetResource, RestorePointResource};
use crate::policy::{
    ACTION_SET_SEAL, POLICY_LABEL, RESTORE_POINT_SEAL, SEAL_ANNOTATION, TICK_ANNOTATION,
};
use crate::storage::manifest::ManifestKey;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// The seal of the ActionSet `ns/name` the scheduler makes for `policy`'s `tick` of
/// `workload` (`kind/name`).
pub fn action_set(
    key: &ManifestKey,
    ns: &str,
    name: &str,
    policy: &str,
    tick: &str,
    workload: &str,
) -> String {
    key.tag(ACTION_SET_SEAL, &[ns, name, policy, tick, workload])
}

/// What a sealed ActionSet passes on to the restore point it makes (its Policy label and
/// tick); nothing for one that claims no Policy; an error for one that claims a Policy
/// without the scheduler's seal.
pub fn marks(
    key: &ManifestKey,
    set: &ActionSetResource,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let labels = set.metadata.labels.clone().unwrap_or_default();
    let Some(policy) = labels.get(POLICY_LABEL) else {
        return Ok(Default::default());
    };
    let annotations = set.metadata.annotations.clone().unwrap_or_default();
    let tick = annotations.get(TICK_ANNOTATION).map(String::as_str);
    let seal = annotations.get(SEAL_ANNOTATION).map(String::as_str);
    let ns = set.metadata.namespace.as_deref().unwrap_or_default();
    let name = set.metadata.name.as_deref().unwrap_or_default();
    match (tick, seal) {
        (Some(tick), Some(seal))
            if key.check_tag(
                ACTION_SET_SEAL,
                &[ns, name, policy, tick, &set.spec.workload],
                seal,
            ) =>
        {
            Ok((
                BTreeMap::from([(POLICY_LABEL.to_string(), policy.clone())]),
                BTreeMap::from([(TICK_ANNOTATION.to_string(), tick.to_string())]),
            ))
        }
        _ => bail!(
            "ActionSet {ns}/{name} carries label {POLICY_LABEL}={policy}, which only coffer's scheduler may set (it has no valid {SEAL_ANNOTATION}); remove the label to run it by hand"
        ),
    }
}

/// Whether restore point `rp` of namespace `ns` was made by a tick of `policy`: its seal
/// holds and its prefix is where that namespace's restore points go.
pub fn restore_point_is(
    key: &ManifestKey,
    rp: &RestorePointResource,
    ns: &str,
    policy: &str,
) -> bool {
    let meta = &rp.metadata;
    let name = meta.name.as_deref().unwrap_or_default();
    let label = meta.labels.as_ref().and_then(|l| l.get(POLICY_LABEL));
    let annotations = meta.annotations.clone().unwrap_or_default();
    let (Some(tick), Some(seal)) = (
        annotations.get(TICK_ANNOTATION),
        annotations.get(SEAL_ANNOTATION),
    ) else {
        return false;
    };
    label.map(String::as_str) == Some(policy)
        && rp
            .spec
            .prefix
            .strip_prefix(&format!("restorepoints/{ns}/"))
            .is_some_and(|rest| rest.ends_with(&format!("/{name}")))
        && key.check_tag(
            RESTORE_POINT_SEAL,
            &[&rp.spec.prefix, name, policy, tick],
            seal,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionSetSpec;

    fn set(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ActionSetResource {
        let spec: ActionSetSpec = serde_json::from_value(
            serde_json::json!({"action": "backup", "workload": "statefulset/pg"}),
        )
        .unwrap();
        let mut s = ActionSetResource::new("policy-gold-statefulset-pg-20260101-000000", spec);
        s.metadata.namespace = Some("db".into());
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        s.metadata.labels = map(labels);
        s.metadata.annotations = map(annotations);
        s
    }

    #[test]
    fn only_the_schedulers_seal_lets_an_action_set_claim_a_policy() {
        let key = ManifestKey::generate();
        let tick = "2026-01-01T00:00:00Z";
        let name = "policy-gold-statefulset-pg-20260101-000000";
        let seal = action_set(&key, "db", name, "gold", tick, "statefulset/pg");
        let good = set(
            &[(POLICY_LABEL, "gold")],
            &[(TICK_ANNOTATION, tick), (SEAL_ANNOTATION, &seal)],
        );
        let (l, a) = marks(&key, &good).unwrap();
        assert_eq!(l[POLICY_LABEL], "gold");
        assert_eq!(a[TICK_ANNOTATION], tick);
        // No Policy label: a manual action, nothing passed on.
        assert!(marks(&key, &set(&[], &[])).unwrap().0.is_empty());
        // Unsealed, another tick, another Policy, another namespace: refused.
        for forged in [
            set(&[(POLICY_LABEL, "gold")], &[(TICK_ANNOTATION, tick)]),
            set(
                &[(POLICY_LABEL, "gold")],
                &[
                    (TICK_ANNOTATION, "2099-01-01T00:00:00Z"),
                    (SEAL_ANNOTATION, &seal),
                ],
            ),
            set(
                &[(POLICY_LABEL, "silver")],
                &[(TICK_ANNOTATION, tick), (SEAL_ANNOTATION, &seal)],
            ),
        ] {
            let e = marks(&key, &forged).unwrap_err().to_string();
            assert!(e.contains("only coffer's scheduler"), "{e}");
        }
        let mut elsewhere = good.clone();
        elsewhere.metadata.namespace = Some("other".into());
        assert!(marks(&key, &elsewhere).is_err());
    }
}
