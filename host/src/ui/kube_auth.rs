//! Who may use the dashboard on Kubernetes: the API server decides. Each request's bearer
//! token is checked with a TokenReview, and each thing the user asks for is authorized with
//! a SubjectAccessReview against coffer's own resources (`create actionsets` in the
//! workload's namespace to back up or restore there), as that user. The dashboard never
//! grants more than RBAC already gives the person: its own, wider ServiceAccount only
//! carries out what the user may do.

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::BTreeMap;

/// A person (or a program) the API server vouched for.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One question for the API server's authorizer about coffer's resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask<'a> {
    pub verb: &'a str,
    /// A resource of coffer.dev: `actionsets`, `restorepoints`, `policies`, …
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

pub struct KubeAuth {
    client: Client,
}

impl KubeAuth {
    pub fn new(client: Client) -> KubeAuth {
        KubeAuth { client }
    }

    /// The user `token` belongs to, or None when the API server does not accept it.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>> {
        if token.is_empty() {
            return Ok(None);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .context("asking the API server who a token belongs to (TokenReview); the daemon's ServiceAccount needs create on tokenreviews (deploy/rbac.yaml)")?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let u = status.user.unwrap_or_default();
        Ok(u.username.map(|name| User {
            name,
            uid: u.uid,
            groups: u.groups.unwrap_or_default(),
            extra: u.extra.unwrap_or_default(),
        }))
    }

    /// Whether `user` may do `ask`, by the API server's authorizer (RBAC and whatever else
    /// the cluster runs). A denial says why when the authorizer does.
    pub async fn allowed(&self, user: &User, ask: &Ask<'_>) -> Result<Result<(), String>> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("coffer.dev".into()),
                    resource: Some(ask.resource.to_string()),
                    verb: Some(ask.verb.to_string()),
                    namespace: ask.namespace.map(String::from),
                    name: ask.name.map(String::from),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .context("asking the API server what a user may do (SubjectAccessReview); the daemon's ServiceAccount needs create on subjectaccessreviews (deploy/rbac.yaml)")?;
        let status = answer.status.unwrap_or_default();
        if status.allowed {
            return Ok(Ok(()));
        }
        let scope = ask
            .namespace
            .map(|n| format!(" in namespace {n}"))
            .unwrap_or_default();
        let why = status
            .reason
            .filter(|r| !r.is_empty())
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        Ok(Err(format!(
            "{} may not {} {}.coffer.dev{scope}{why}; ask a cluster admin for a Role that grants it",
            user.name, ask.verb, ask.resource
        )))
    }
}
