//! What a plugin may have signed: the plugin declares a signer by name, the Blueprint grants
//! it for one service with the hosts and methods allowed. A request must fall inside one
//! such grant; the grant it falls in gives the service it is signed for.

use super::signer::ReadySigner;
use crate::cap::{Grant, Grants};
use crate::wit::WitError;
use coffer_manifest::{Capabilities, SignerAllow, SignerUse, glob_matches};

pub struct SignedHttpGrant(Grant<Vec<SignerUse>>);

/// Problems with a Blueprint's `spec.grants.signedHttp`, as a message for `coffer apply`.
pub fn check_grants(c: &Capabilities) -> Result<(), String> {
    for (i, g) in c.signed_http.iter().enumerate() {
        let SignerUse::Allow(a) = g else {
            return Err(format!(
                "signedHttp[{i}]: {:?} grants a signer by name only; grant it with what it may sign: {{signer: {0}, service: rds, hosts: [...], methods: [POST]}}",
                g.signer()
            ));
        };
        if a.signer.is_empty() || a.service.is_empty() {
            return Err(format!("signedHttp[{i}]: name the signer and the service"));
        }
        if let Some(m) = a
            .methods
            .iter()
            .find(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "signedHttp[{i}].methods: {m:?} is not a method like GET or POST"
            ));
        }
    }
    Ok(())
}

impl SignedHttpGrant {
    pub fn new(grants: &Grants) -> SignedHttpGrant {
        SignedHttpGrant(Grant::new(grants, |c| c.signed_http.clone()))
    }

    /// The signer named `name` is declared and granted at all.
    pub fn check(&self, name: &str) -> Result<(), WitError> {
        self.0.check(
            |uses| uses.iter().any(|u| u.signer() == name),
            || format!("signer {name:?}"),
            "signedHttp",
        )
    }

    /// The service `method` to `url` is signed for with `signer`: the one grant whose
    /// hosts and methods allow it. Denied when none does, or when grants for two services
    /// both would (the plugin cannot choose which to sign for).
    pub fn service(
        &self,
        signer: &ReadySigner,
        method: &str,
        url: &url::Url,
    ) -> Result<String, WitError> {
        self.check(&signer.name)?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default();
        let allows = |a: &SignerAllow| {
            a.signer == signer.name
                && (a.methods.is_empty() || a.methods.iter().any(|m| m == method))
                && hosts(a, signer)
                    .iter()
                    .any(|(h, p)| glob_matches(h, host) && p.is_none_or(|p| Some(p) == port))
        };
        let mut services: Vec<&str> = self
            .0
            .granted
            .iter()
            .filter_map(|g| match g {
                SignerUse::Allow(a) if allows(a) => Some(a.service.as_str()),
                _ => None,
            })
            .collect();
        services.dedup();
        match services.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(WitError::Denied(format!(
                "signed-http: {method} {host}{} is outside what Blueprint grants signer {} (spec.grants.signedHttp: service, hosts, methods)",
                url.path(),
                signer.name
            ))),
            many => Err(WitError::Denied(format!(
                "signed-http: {method} {host} is granted for several services ({}); give each grant its own hosts",
                many.join(", ")
            ))),
        }
    }
}

/// The hosts a grant allows, with the port when it is pinned: its own, or the Signer's
/// endpoint, or AWS's host for the service in the Signer's region.
fn hosts(a: &SignerAllow, signer: &ReadySigner) -> Vec<(String, Option<u16>)> {
    if !a.hosts.is_empty() {
        return a.hosts.iter().map(|h| (h.to_lowercase(), None)).collect();
    }
    match &signer.endpoint {
        Some(e) => vec![(
            e.host_str().unwrap_or_default().to_lowercase(),
            e.port_or_known_default(),
        )],
        None => vec![(
            format!("{}.{}.amazonaws.com", a.service, signer.region),
            Some(443),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(granted: Vec<SignerUse>) -> SignedHttpGrant {
        SignedHttpGrant::new(&Grants {
            declared: Capabilities {
                signed_http: vec!["aws".into()],
                ..Default::default()
            },
            granted: Capabilities {
                signed_http: granted,
                ..Default::default()
            },
            plugin: "rds".into(),
            blueprint: "rds".into(),
        })
    }

    fn allow(service: &str, hosts: &[&str], methods: &[&str]) -> SignerUse {
        SignerUse::Allow(SignerAllow {
            signer: "aws".into(),
            service: service.into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn a_request_is_signed_only_inside_its_grant() {
        let aws = ReadySigner::for_test("aws", "eu-west-1", None);
        let g = grants(vec![allow("rds", &[], &["POST"])]);
        // The default host: the service's in the Signer's region, on 443.
        assert_eq!(
            g.service(&aws, "POST", &url("https://rds.eu-west-1.amazonaws.com/"))
                .unwrap(),
            "rds"
        );
        for (method, u) in [
            ("GET", "https://rds.eu-west-1.amazonaws.com/"),
            ("POST", "https://rds.us-east-1.amazonaws.com/"),
            ("POST", "https://rds.eu-west-1.amazonaws.com:8443/"),
            ("POST", "https://s3.eu-west-1.amazonaws.com/"),
            ("POST", "https://rds.eu-west-1.amazonaws.com.evil.example/"),
        ] {
            assert!(
                matches!(g.service(&aws, method, &url(u)), Err(WitError::Denied(_))),
                "{method} {u} was allowed"
            );
        }
        // Globs name hosts; two services on one host cannot be told apart.
        let g = grants(vec![
            allow("s3", &["*.s3.eu-west-1.amazonaws.com"], &[]),
            allow("sts", &["sts.amazonaws.com"], &[]),
        ]);
        assert_eq!(
            g.service(
                &aws,
                "PUT",
                &url("https://bucket.s3.eu-west-1.amazonaws.com/k")
            )
            .unwrap(),
            "s3"
        );
        let g = grants(vec![allow("s3", &["*"], &[]), allow("sts", &["*"], &[])]);
        assert!(g.service(&aws, "GET", &url("https://x.example/")).is_err());
        // An endpoint Signer: its host and port.
        let moto = ReadySigner::for_test("aws", "us-east-1", Some("http://127.0.0.1:5000"));
        let g = grants(vec![allow("rds", &[], &[])]);
        assert!(
            g.service(&moto, "POST", &url("http://127.0.0.1:5000/"))
                .is_ok()
        );
        assert!(
            g.service(&moto, "POST", &url("http://127.0.0.1:5001/"))
                .is_err()
        );
        // Not granted at all, or granted by name only.
        assert!(
            grants(vec![])
                .service(&aws, "POST", &url("https://rds.eu-west-1.amazonaws.com/"))
                .is_err()
        );
        assert!(
            check_grants(&Capabilities {
                signed_http: vec!["aws".into()],
                ..Default::default()
            })
            .is_err()
        );
    }
}
