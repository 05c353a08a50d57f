//! Kubernetes RBAC, evaluated as the API server would for the requests the simulator saw:
//! the daemon's e2e tests check that every call the daemon made is allowed by
//! deploy/rbac.yaml (plus the per-namespace opt-in of deploy/examples/namespace.yaml), so
//! the shipped roles can neither drift short of what coffer does nor be left wide open
//! without a test noticing a needed verb went missing.

use crate::kube_sim::Seen;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

/// The rules that apply to one ServiceAccount: cluster-wide, or in one namespace.
#[derive(Debug, Default)]
pub struct Rbac {
    grants: Vec<(Option<String>, Rule)>,
}

/// One authorization question.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub verb: String,
    pub group: String,
    /// `pods`, `pods/exec`, `actionsets/status`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn rules_of(doc: &Value) -> Vec<Rule> {
    doc["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Rule {
            api_groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
            resource_names: strings(&r["resourceNames"]),
        })
        .collect()
}

impl Rbac {
    /// The rules bound to ServiceAccount `ns/name` by the documents of `yaml_files`.
    pub fn load(yaml_files: &[&str], ns: &str, name: &str) -> Rbac {
        let mut docs = Vec::new();
        for text in yaml_files {
            for d in serde_yaml_ng::Deserializer::from_str(text) {
                let v: Value = serde::Deserialize::deserialize(d).expect("RBAC YAML parses");
                if !v.is_null() {
                    docs.push(v);
                }
            }
        }
        let find = |kind: &str, role: &str, role_ns: Option<&str>| -> Vec<Rule> {
            docs.iter()
                .filter(|d| {
                    d["kind"] == kind
                        && d["metadata"]["name"] == role
                        && (kind == "ClusterRole" || d["metadata"]["namespace"].as_str() == role_ns)
                })
                .flat_map(rules_of)
                .collect()
        };
        let mut grants = Vec::new();
        for b in &docs {
            let kind = b["kind"].as_str().unwrap_or_default();
            if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
                continue;
            }
            let ours = b["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == name && s["namespace"] == ns
            });
            if !ours {
                continue;
            }
            let binding_ns = b["metadata"]["namespace"].as_str();
            let role_kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
            let role = b["roleRef"]["name"].as_str().unwrap_or_default();
            let scope = if kind == "ClusterRoleBinding" {
                None
            } else {
                binding_ns.map(String::from)
            };
            for r in find(role_kind, role, binding_ns) {
                grants.push((scope.clone(), r));
            }
        }
        Rbac { grants }
    }

    pub fn allows(&self, a: &Ask) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        self.grants.iter().any(|(scope, r)| {
            (scope.is_none() || scope.as_deref() == a.namespace.as_deref())
                && any(&r.api_groups, &a.group)
                && any(&r.resources, &a.resource)
                && any(&r.verbs, &a.verb)
                && (r.resource_names.is_empty()
                    || a.name.as_deref().is_some_and(|n| any(&r.resource_names, n)))
        })
    }
}

/// What a request the simulator saw asks: verb, group, resource, namespace, name. A
/// request that impersonates also asks to impersonate that ServiceAccount.
pub fn asks(s: &Seen) -> Vec<Ask> {
    let seg: Vec<&str> = s.path.trim_matches('/').split('/').collect();
    let (group, rest) = match seg.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
        _ => return vec![],
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (r.to_string(), None, None),
        [r, n] => (r.to_string(), Some(n.to_string()), None),
        [r, n, s] => (r.to_string(), Some(n.to_string()), Some(s.to_string())),
        _ => return vec![],
    };
    let watching = matches!(s.query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (s.method.as_str(), &name, sub.as_deref()) {
        // Exec over a websocket is a GET that needs `create`.
        (_, _, Some("exec")) => "create",
        ("GET", _, _) if watching => "watch",
        ("GET", None, _) => "list",
        ("GET", Some(_), _) => "get",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", None, _) => "deletecollection",
        ("DELETE", Some(_), _) => "delete",
        _ => "unknown",
    };
    let resource = match &sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource,
    };
    let mut out = Vec::new();
    if let Some(user) = &s.impersonate
        && let Some(sa) = user.strip_prefix("system:serviceaccount:")
        && let Some((sa_ns, sa_name)) = sa.split_once(':')
    {
        out.push(Ask {
            verb: "impersonate".into(),
            group: String::new(),
            resource: "serviceaccounts".into(),
            namespace: Some(sa_ns.into()),
            name: Some(sa_name.into()),
        });
        // The call itself is the impersonated account's, by the tenant's RBAC.
        return out;
    }
    out.push(Ask {
        verb: verb.into(),
        group,
        resource,
        namespace,
        name,
    });
    out
}

/// The shipped RBAC for the daemon, with `namespaces` opted in as the example shows.
pub fn shipped(namespaces: &[&str]) -> Rbac {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rbac = std::fs::read_to_string(root.join("deploy/rbac.yaml")).unwrap();
    let example = std::fs::read_to_string(root.join("deploy/examples/namespace.yaml")).unwrap();
    let mut files = vec![rbac];
    for ns in namespaces {
        files.push(example.replace("namespace: db", &format!("namespace: {ns}")));
    }
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    Rbac::load(&refs, "coffer", "coffer")
}

/// Every request in `seen` made as `user` that the shipped RBAC would refuse.
pub fn refused(seen: &[Seen], user: &str, rbac: &Rbac) -> Vec<(Ask, String)> {
    seen.iter()
        .filter(|s| s.user.as_deref() == Some(user))
        .flat_map(|s| asks(s).into_iter().map(move |a| (a, s.path.clone())))
        .filter(|(a, _)| !rbac.allows(a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_roles_are_narrow() {
        let r = shipped(&["db"]);
        let ask = |verb: &str, group: &str, resource: &str, ns: Option<&str>| Ask {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.map(String::from),
            name: Some("x".into()),
        };
        assert!(r.allows(&ask("create", "", "pods/exec", Some("db"))));
        assert!(r.allows(&ask("get", "", "secrets", Some("coffer"))));
        assert!(r.allows(&ask("list", "coffer.dev", "actionsets", None)));
        // Nothing in a namespace that did not opt in; no Secret of kube-system.
        assert!(!r.allows(&ask("create", "", "pods/exec", Some("kube-system"))));
        assert!(!r.allows(&ask("get", "", "secrets", Some("kube-system"))));
        assert!(!r.allows(&ask("list", "", "secrets", None)));
        assert!(!r.allows(&ask(
            "impersonate",
            "",
            "serviceaccounts",
            Some("kube-system")
        )));
    }
}
