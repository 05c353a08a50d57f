//! What a plugin may do at its locations: read, write, delete. The action adds its own
//! limit on top (a restore only reads): see `BoundLocation::access`.

use crate::cap::{Grant, Grants};
use crate::wit::WitError;
use coffer_manifest::LocationAccess;

pub struct LocationGrant(Grant<Vec<LocationAccess>>);

impl LocationGrant {
    pub fn new(grants: &Grants) -> LocationGrant {
        LocationGrant(Grant::new(grants, |c| c.location.clone()))
    }

    pub fn check(&self, name: &str, access: LocationAccess) -> Result<(), WitError> {
        self.0.check(
            |a| a.contains(&access),
            || format!("location {} access to {name:?}", access.as_str()),
            "location",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocationAccess::*;
    use coffer_manifest::Capabilities;

    #[test]
    fn each_access_must_be_declared_and_granted() {
        let caps = |a: &[LocationAccess]| Capabilities {
            location: a.to_vec(),
            ..Default::default()
        };
        let g = LocationGrant::new(&Grants {
            declared: caps(&[Read, Write, Delete]),
            granted: caps(&[Read, Write]),
            plugin: "p".into(),
            blueprint: "bp".into(),
        });
        for (access, ok) in [(Read, true), (Write, true), (Delete, false)] {
            assert_eq!(g.check("default", access).is_ok(), ok, "{access:?}");
        }
        let none = LocationGrant::new(&Grants::none("p"));
        assert!(none.check("default", Read).is_err());
    }
}
