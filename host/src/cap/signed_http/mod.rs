//! The `signed-http` interface: cloud API calls the host signs for the plugin, so it never
//! holds a key. Declared in the ABI; its backend is not built yet, so each call is
//! grant-checked, audited, and answered `unavailable`.

use super::{Backends, CapView, Capability, Grant, Grants, HasCap, HostResult};
use crate::wit::WitError;
use crate::wit::abi::signed_http;
use std::time::Instant;
use wasmtime::component::Linker;

/// The signer profiles a plugin may use, by name.
pub struct SignedHttpGrant(Grant<Vec<String>>);

impl SignedHttpGrant {
    pub fn new(grants: &Grants) -> SignedHttpGrant {
        SignedHttpGrant(Grant::new(grants, |c| c.signed_http.clone()))
    }

    pub fn check(&self, profile: &str) -> Result<(), WitError> {
        self.0.check(
            |names| names.iter().any(|p| p == profile),
            || format!("signed-http profile {profile:?}"),
            "signedHttp",
        )
    }
}

pub struct SignedHttp {
    grant: SignedHttpGrant,
}

impl Capability for SignedHttp {
    fn build(grants: &Grants, _: &Backends) -> SignedHttp {
        SignedHttp {
            grant: SignedHttpGrant::new(grants),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        signed_http::add_to_linker::<T, HasCap<SignedHttp>>(linker, get)
    }
}

impl signed_http::Host for CapView<'_, SignedHttp> {
    async fn send(
        &mut self,
        profile: String,
        req: signed_http::Request,
    ) -> HostResult<signed_http::Response> {
        let started = Instant::now();
        let res = self.cap.grant.check(&profile).and_then(|_| {
            Err(WitError::Unavailable(
                "signed-http is not built yet: no signer can sign this request".into(),
            ))
        });
        let target = format!("{} {}", req.method, req.url);
        self.scope
            .audit("signed-http.send", &target, "", started, &res, 0);
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_manifest::Capabilities;

    #[test]
    fn a_profile_must_be_declared_and_granted() {
        let caps = |names: &[&str]| Capabilities {
            signed_http: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let g = SignedHttpGrant::new(&Grants {
            declared: caps(&["aws", "gcp"]),
            granted: caps(&["aws"]),
            plugin: "rds".into(),
            blueprint: "rds".into(),
        });
        for (profile, ok) in [("aws", true), ("gcp", false), ("azure", false), ("", false)] {
            assert_eq!(g.check(profile).is_ok(), ok, "{profile}");
        }
    }
}
