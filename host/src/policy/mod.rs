//! Policies: continuous protection. When a Policy's ticks fall ([`schedule`]), which restore
//! points it keeps ([`retention`]), and its rules checked from the spec.

pub mod retention;
pub mod schedule;

pub use retention::Keep;
pub use schedule::Frequency;

use crate::model::PolicySpec;

/// The label a Policy's restore points (and ActionSets) carry.
pub const POLICY_LABEL: &str = "coffer.dev/policy";
/// Why an ActionSet ran: `retention` for a Policy's deletions.
pub const REASON_LABEL: &str = "coffer.dev/reason";
/// The tick a Policy's restore point was made for (RFC 3339).
pub const TICK_ANNOTATION: &str = "coffer.dev/tick";
/// On Kubernetes, where a tenant can write ActionSets and RestorePoints with any labels: a
/// MAC under the cluster's manifest key, put by the scheduler on the ActionSets it makes
/// and by the runner on the restore points those make. Only sealed ones are a Policy's
/// (retention and compliance ignore the rest, and a runner refuses an unsealed ActionSet
/// that claims a Policy).
pub const SEAL_ANNOTATION: &str = "coffer.dev/seal";
/// What a seal is over: the ActionSet's namespace, name, Policy, tick and workload.
pub const ACTION_SET_SEAL: &str = "policy actionset v1";
/// What a seal is over: the restore point's prefix (its namespace and workload), name,
/// Policy and tick.
pub const RESTORE_POINT_SEAL: &str = "policy restorepoint v1";

/// A Policy made concrete: its schedule, zone, deadline and retention.
#[derive(Debug, Clone)]
pub struct PolicyRules {
    pub frequency: Frequency,
    pub timezone: jiff::tz::TimeZone,
    pub starting_deadline: std::time::Duration,
    pub keep: Keep,
    /// Time between a stream's links, when the Policy streams.
    pub stream_every: Option<std::time::Duration>,
}

/// Check every field of `spec`, naming the one that is wrong.
pub fn rules(spec: &PolicySpec) -> Result<PolicyRules, String> {
    {
        let frequency =
            Frequency::parse(&spec.frequency).map_err(|e| format!("spec.frequency: {e}"))?;
        let timezone = match spec.timezone.as_deref() {
            None | Some("UTC") => jiff::tz::TimeZone::UTC,
            Some(z) => jiff::tz::TimeZone::get(z).map_err(|_| {
                format!("spec.timezone: {z:?} is not a known IANA time zone (e.g. Europe/Berlin)")
            })?,
        };
        let starting_deadline = match &spec.starting_deadline {
            None => std::time::Duration::from_secs(30 * 60),
            Some(d) => crate::model::parse_duration(d)
                .map_err(|e| format!("spec.startingDeadline: {e}"))?,
        };
        let r = spec.retention;
        let keep = Keep {
            hourly: r.hourly,
            daily: r.daily,
            weekly: r.weekly,
            monthly: r.monthly,
            yearly: r.yearly,
        };
        if keep.is_empty() {
            return Err(
                "spec.retention keeps nothing: give at least one of hourly, daily, weekly, monthly, yearly"
                    .into(),
            );
        }
        let stream_every = match &spec.stream {
            None => None,
            Some(s) => {
                let d = crate::model::parse_duration(&s.every)
                    .map_err(|e| format!("spec.stream.every: {e}"))?;
                if d < std::time::Duration::from_secs(1) {
                    return Err(format!(
                        "spec.stream.every: {:?} is under 1s; give 1s or more",
                        s.every
                    ));
                }
                Some(d)
            }
        };
        if spec.full_every == Some(0) {
            return Err(
                "spec.fullEvery: 0 backups between fulls is no schedule; give 1 (every backup full) or more"
                    .into(),
            );
        }
        let s = &spec.selector;
        if s.workloads.is_empty()
            && s.kinds.is_empty()
            && s.namespaces.is_empty()
            && s.labels.is_empty()
            && s.annotations.is_empty()
        {
            return Err(
                "spec.selector is empty, so the policy would protect nothing; give workloads (local mode) or kinds, namespaces, labels, annotations"
                    .into(),
            );
        }
        for w in &s.workloads {
            if !coffer_manifest::is_dns_label(w) {
                return Err(format!(
                    "spec.selector.workloads: {w:?} is not a workload name"
                ));
            }
        }
        Ok(PolicyRules {
            frequency,
            timezone,
            starting_deadline,
            keep,
            stream_every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<PolicyRules, String> {
        let s: PolicySpec = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        rules(&s)
    }

    #[test]
    fn a_bad_policy_is_refused_naming_the_field() {
        let ok = "{frequency: '@hourly', timezone: Europe/Berlin, selector: {workloads: [shop-db]}, retention: {hourly: 24, daily: 7}}";
        assert!(spec(ok).is_ok());
        for (yaml, says) in [
            (
                "{frequency: '@hourly', selector: {workloads: [a]}, retention: {daily: 1}, color: red}",
                "unknown field `color`",
            ),
            (
                "{frequency: '0 25 * * *', selector: {workloads: [a]}, retention: {daily: 1}}",
                "spec.frequency: hour: 25",
            ),
            (
                "{frequency: '@daily', timezone: Mars/Olympus, selector: {workloads: [a]}, retention: {daily: 1}}",
                "spec.timezone",
            ),
            (
                "{frequency: '@daily', selector: {workloads: [a]}, retention: {}}",
                "spec.retention keeps nothing",
            ),
            (
                "{frequency: '@daily', selector: {workloads: [a]}, retention: {daily: 1, weekyl: 2}}",
                "unknown field `weekyl`",
            ),
            (
                "{frequency: '@daily', selector: {}, retention: {daily: 1}}",
                "spec.selector is empty",
            ),
            (
                "{frequency: '@daily', selector: {workloads: [a]}, retention: {daily: 1}, startingDeadline: soon}",
                "spec.startingDeadline",
            ),
        ] {
            let e = spec(yaml).unwrap_err();
            assert!(e.contains(says), "{yaml}: {e}");
        }
    }
}
