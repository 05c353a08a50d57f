//! Which Blueprint protects a Kubernetes workload: a matching BlueprintBinding (earliest
//! created first), else the workload's `coffer.dev/blueprint` annotation, else none. Pure
//! logic, shared by the controller and `coffer get bindings`.

use crate::model::{BlueprintBinding, WorkloadSelector};
use std::collections::BTreeMap;

/// The annotation that names a workload's Blueprint when no binding matches.
pub const BLUEPRINT_ANNOTATION: &str = "coffer.dev/blueprint";

/// What a binding is matched against.
#[derive(Debug, Clone, Default)]
pub struct WorkloadInfo {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// How a workload got its Blueprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// By a binding; `also` names other bindings that match but lost (created later).
    Binding {
        binding: String,
        blueprint: String,
        also: Vec<String>,
    },
    Annotation {
        blueprint: String,
    },
    Unprotected,
}

impl Resolution {
    pub fn blueprint(&self) -> Option<&str> {
        match self {
            Resolution::Binding { blueprint, .. } | Resolution::Annotation { blueprint } => {
                Some(blueprint)
            }
            Resolution::Unprotected => None,
        }
    }
}

/// Resolve the Blueprint of `w` among `bindings`.
pub fn resolve(w: &WorkloadInfo, bindings: &[BlueprintBinding]) -> Resolution {
    let mut matching: Vec<&BlueprintBinding> = bindings
        .iter()
        .filter(|b| matches(&b.spec.selector, w))
        .collect();
    // Earliest created wins; the name breaks ties so the answer never depends on order.
    matching.sort_by(|a, b| {
        let ka = (
            a.metadata.creation_timestamp.as_deref().unwrap_or(""),
            &a.metadata.name,
        );
        let kb = (
            b.metadata.creation_timestamp.as_deref().unwrap_or(""),
            &b.metadata.name,
        );
        ka.cmp(&kb)
    });
    if let Some((first, rest)) = matching.split_first() {
        return Resolution::Binding {
            binding: first.metadata.name.clone(),
            blueprint: first.spec.blueprint.clone(),
            also: rest.iter().map(|b| b.metadata.name.clone()).collect(),
        };
    }
    match w.annotations.get(BLUEPRINT_ANNOTATION) {
        Some(bp) if !bp.is_empty() => Resolution::Annotation {
            blueprint: bp.clone(),
        },
        _ => Resolution::Unprotected,
    }
}

/// Whether a selector matches a workload. An empty selector matches nothing: a binding
/// that protected every workload of a cluster by accident would be worse than none.
pub fn matches(s: &WorkloadSelector, w: &WorkloadInfo) -> bool {
    if s.kinds.is_empty()
        && s.namespaces.is_empty()
        && s.labels.is_empty()
        && s.annotations.is_empty()
    {
        return false;
    }
    let kind_ok = s.kinds.is_empty() || s.kinds.iter().any(|k| k.eq_ignore_ascii_case(&w.kind));
    let ns_ok = s.namespaces.is_empty()
        || s.namespaces
            .iter()
            .any(|p| coffer_manifest::glob_matches(p, &w.namespace));
    kind_ok
        && ns_ok
        && all_present(&s.labels, &w.labels)
        && all_present(&s.annotations, &w.annotations)
}

fn all_present(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, v)| have.get(k).is_some_and(|hv| v == "*" || hv == v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlueprintBindingSpec, Kind};

    fn binding(name: &str, created: &str, bp: &str, s: WorkloadSelector) -> BlueprintBinding {
        let mut b = BlueprintBinding::new(
            Kind::BlueprintBinding,
            name,
            BlueprintBindingSpec {
                blueprint: bp.into(),
                selector: s,
            },
        );
        b.metadata.creation_timestamp = Some(created.into());
        b
    }

    fn pg_statefulset() -> WorkloadInfo {
        WorkloadInfo {
            kind: "StatefulSet".into(),
            namespace: "team-db".into(),
            name: "pg".into(),
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "postgresql".into())]),
            annotations: BTreeMap::from([(BLUEPRINT_ANNOTATION.into(), "custom-pg".into())]),
        }
    }

    #[test]
    fn a_binding_overrides_the_annotation_and_the_earliest_wins() {
        let sel = WorkloadSelector {
            kinds: vec!["statefulset".into()],
            namespaces: vec!["team-*".into()],
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "postgresql".into())]),
            ..Default::default()
        };
        let late = binding("b-late", "2026-02-01T00:00:00Z", "pg-late", sel.clone());
        let early = binding("b-early", "2026-01-01T00:00:00Z", "postgres-logical", sel);
        let w = pg_statefulset();
        assert_eq!(
            resolve(&w, &[late.clone(), early.clone()]),
            Resolution::Binding {
                binding: "b-early".into(),
                blueprint: "postgres-logical".into(),
                also: vec!["b-late".into()],
            }
        );
        // The same whatever the order they are listed in.
        assert_eq!(
            resolve(&w, &[early, late]).blueprint(),
            Some("postgres-logical")
        );
        // No binding: the annotation.
        assert_eq!(
            resolve(&w, &[]),
            Resolution::Annotation {
                blueprint: "custom-pg".into()
            }
        );
    }

    #[test]
    fn every_given_field_must_match() {
        let w = pg_statefulset();
        let base = WorkloadSelector {
            kinds: vec!["StatefulSet".into()],
            ..Default::default()
        };
        assert!(matches(&base, &w));
        let wrong_kind = WorkloadSelector {
            kinds: vec!["Deployment".into()],
            ..Default::default()
        };
        assert!(!matches(&wrong_kind, &w));
        let wrong_ns = WorkloadSelector {
            namespaces: vec!["prod".into()],
            ..base.clone()
        };
        assert!(!matches(&wrong_ns, &w));
        let any_value = WorkloadSelector {
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "*".into())]),
            ..base.clone()
        };
        assert!(matches(&any_value, &w));
        let missing_label = WorkloadSelector {
            labels: BTreeMap::from([("tier".into(), "db".into())]),
            ..base.clone()
        };
        assert!(!matches(&missing_label, &w));
        let annotation = WorkloadSelector {
            annotations: BTreeMap::from([(BLUEPRINT_ANNOTATION.into(), "custom-pg".into())]),
            ..Default::default()
        };
        assert!(matches(&annotation, &w));
        // An empty selector matches nothing.
        assert!(!matches(&WorkloadSelector::default(), &w));
        let mut plain = w.clone();
        plain.annotations.clear();
        assert_eq!(resolve(&plain, &[]), Resolution::Unprotected);
    }

    #[test]
    fn namespace_globs() {
        for (p, t, want) in [
            ("team-*", "team-db", true),
            ("team-*", "team-", true),
            ("team-*", "prod", false),
            ("*-db", "team-db", true),
            ("*", "anything", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("db", "db", true),
            ("db", "db2", false),
        ] {
            assert_eq!(coffer_manifest::glob_matches(p, t), want, "{p} ~ {t}");
        }
    }
}
