//! What kube calls may do: a grant names an API group (`""` core, `*` any), a kind, verbs,
//! and the namespaces it reaches besides the subject's own.

use crate::cap::{Grant, Grants};
use crate::wit::WitError;
use coffer_manifest::KindGrant;

pub struct KubeGrant(Grant<Vec<KindGrant>>);

impl KubeGrant {
    pub fn new(grants: &Grants) -> KubeGrant {
        KubeGrant(Grant::new(grants, |c| c.kube.clone()))
    }

    /// `api_version` is the object's (`apps/v1`, `v1`); `namespace` is where the call goes;
    /// `home` is the subject's namespace (none in local mode).
    pub fn check(
        &self,
        api_version: &str,
        kind: &str,
        verb: &str,
        namespace: &str,
        home: Option<&str>,
    ) -> Result<(), WitError> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind_ok = |g: &KindGrant| {
            (g.api_group == group || g.api_group == "*")
                && (g.kind == kind || g.kind == "*")
                && g.verbs.iter().any(|v| v == verb || v == "*")
        };
        let ns_ok = |g: &KindGrant| {
            // Local mode has no cluster: the backend answers `unavailable`.
            home == Some(namespace)
                || (home.is_none() && namespace.is_empty())
                || g.namespaces
                    .iter()
                    .any(|p| coffer_manifest::glob_matches(p, namespace))
        };
        let what = || {
            let what = if group.is_empty() {
                format!("kube {verb} on {kind}")
            } else {
                format!("kube {verb} on {kind}.{group}")
            };
            let kind_granted = |gs: &Vec<KindGrant>| gs.iter().any(kind_ok);
            if kind_granted(&self.0.declared) && kind_granted(&self.0.granted) {
                format!(
                    "{what} in namespace {namespace} (the subject's is {}; list others in the grant's namespaces)",
                    home.unwrap_or("none")
                )
            } else {
                what
            }
        };
        self.0
            .check(|gs| gs.iter().any(|g| kind_ok(g) && ns_ok(g)), what, "kube")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_manifest::Capabilities;

    fn grant(declared_ns: &[&str], granted_ns: &[&str]) -> KubeGrant {
        let caps = |ns: &[&str]| Capabilities {
            kube: vec![KindGrant {
                api_group: "apps".into(),
                kind: "StatefulSet".into(),
                verbs: vec!["get".into(), "patch".into()],
                namespaces: ns.iter().map(|s| s.to_string()).collect(),
            }],
            ..Default::default()
        };
        KubeGrant::new(&Grants {
            declared: caps(declared_ns),
            granted: caps(granted_ns),
            plugin: "p".into(),
            blueprint: "bp".into(),
        })
    }

    #[test]
    fn grants_name_the_group_kind_verb_and_namespaces() {
        let subject_only = grant(&[], &[]);
        let listed = grant(&["*"], &["db", "team-*"]);
        for (g, api, verb, ns, home, outcome) in [
            // No cluster, so no namespace is the subject's: only listed ones pass.
            (&subject_only, "apps/v1", "get", "db", None, Err("")),
            (&subject_only, "apps/v1", "get", "db", Some("db"), Ok(())),
            (
                &subject_only,
                "apps/v1",
                "get",
                "other",
                Some("db"),
                Err("namespace other"),
            ),
            (&listed, "apps/v1", "get", "db", None, Ok(())),
            (&listed, "apps/v1", "get", "team-a", None, Ok(())),
            (
                &listed,
                "apps/v1",
                "get",
                "kube-system",
                None,
                Err("namespace kube-system"),
            ),
            (
                &listed,
                "apps/v1",
                "delete",
                "db",
                None,
                Err("kube delete on StatefulSet.apps"),
            ),
            // The same kind name in another group is another resource.
            (
                &listed,
                "example.com/v1",
                "get",
                "db",
                None,
                Err("StatefulSet.example.com"),
            ),
            (
                &listed,
                "v1",
                "get",
                "db",
                None,
                Err("kube get on StatefulSet:"),
            ),
        ] {
            match (g.check(api, "StatefulSet", verb, ns, home), outcome) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(want)) => {
                    let text = crate::cap::error_text(&e);
                    assert!(text.contains(want), "{api} {verb} {ns}: {text}")
                }
                (got, want) => panic!("{api} {verb} {ns}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
