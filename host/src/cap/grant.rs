//! The rule every capability applies: a call is allowed only when the plugin's manifest
//! declares it AND the Blueprint grants it. Each capability keeps its slice of both as a
//! [`Grant`] and says what "allows" means for it; the denial names which side is missing
//! and where to add it.

use crate::wit::WitError;
use coffer_manifest::Capabilities;
use std::sync::Arc;

/// What the plugin declares and what its Blueprint grants, for one action.
#[derive(Debug, Clone)]
pub struct Grants {
    pub declared: Capabilities,
    pub granted: Capabilities,
    /// Named in denials.
    pub plugin: String,
    pub blueprint: String,
}

impl Grants {
    /// Nothing declared, nothing granted.
    pub fn none(plugin: &str) -> Grants {
        Grants {
            declared: Capabilities::default(),
            granted: Capabilities::default(),
            plugin: plugin.into(),
            blueprint: String::new(),
        }
    }
}

/// One capability's slice of the grants.
#[derive(Debug, Clone)]
pub struct Grant<T> {
    pub declared: T,
    pub granted: T,
    names: Arc<(String, String)>,
}

impl<T> Grant<T> {
    pub fn new(grants: &Grants, slice: impl Fn(&Capabilities) -> T) -> Grant<T> {
        Grant {
            declared: slice(&grants.declared),
            granted: slice(&grants.granted),
            names: Arc::new((grants.plugin.clone(), grants.blueprint.clone())),
        }
    }

    /// Ok when both sides allow it; else a denial of `what` naming the missing side
    /// (`field` is the Blueprint's `spec.grants` field to add it to).
    pub fn check(
        &self,
        allows: impl Fn(&T) -> bool,
        what: impl FnOnce() -> String,
        field: &str,
    ) -> Result<(), WitError> {
        let declared = allows(&self.declared);
        if declared && allows(&self.granted) {
            return Ok(());
        }
        Err(self.denied(&what(), declared, field))
    }

    pub fn denied(&self, what: &str, declared: bool, field: &str) -> WitError {
        let (plugin, blueprint) = &*self.names;
        if !declared {
            WitError::Denied(format!(
                "{what}: not declared in plugin {plugin}'s manifest (capabilities)"
            ))
        } else {
            WitError::Denied(format!(
                "{what}: not granted by Blueprint {blueprint} (add it to spec.grants.{field})"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_must_allow_and_the_denial_names_the_missing_one() {
        let grants = Grants {
            declared: Capabilities {
                secrets: vec!["a".into(), "b".into()],
                ..Default::default()
            },
            granted: Capabilities {
                secrets: vec!["a".into(), "c".into()],
                ..Default::default()
            },
            plugin: "p".into(),
            blueprint: "bp".into(),
        };
        let g = Grant::new(&grants, |c| c.secrets.clone());
        let check = |name: &str| {
            g.check(
                |s: &Vec<String>| s.iter().any(|x| x == name),
                || format!("secret {name}"),
                "secrets",
            )
        };
        for (name, outcome) in [
            ("a", None),
            (
                "b",
                Some("not granted by Blueprint bp (add it to spec.grants.secrets)"),
            ),
            ("c", Some("not declared in plugin p's manifest")),
            ("d", Some("not declared in plugin p's manifest")),
        ] {
            match (check(name), outcome) {
                (Ok(()), None) => {}
                (Err(WitError::Denied(m)), Some(want)) => {
                    assert!(m.contains(want), "{name}: {m}")
                }
                (got, want) => panic!("{name}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
