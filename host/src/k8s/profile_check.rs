//! Profile status: the Lease holder runs the probes of `coffer profile validate` on every
//! Profile of its namespace when the Profile changes and periodically, and writes
//! `status.validation`; an ActionSet naming a Profile whose current generation failed is
//! refused at once, with why.

use super::run::ClusterCtx;
use crate::model::{ProbeResult, ProfileResource, ProfileStatus, ProfileValidation, now_rfc3339};
use anyhow::{Result, bail};
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::time::Duration;

/// How often a Valid Profile is probed again (a bucket policy or a key can change without
/// the Profile changing); a Failed one sooner, so a fixed Secret is noticed quickly.
const RECHECK_VALID: Duration = Duration::from_secs(600);
const RECHECK_FAILED: Duration = Duration::from_secs(30);
/// How often the Profiles are listed to notice changes.
const POLL: Duration = Duration::from_secs(5);

pub const VALID: &str = "Valid";
pub const FAILED: &str = "Failed";

/// Check Profiles until the future is dropped (the daemon stops leading).
pub async fn run(cx: &ClusterCtx) {
    let api = Api::<ProfileResource>::namespaced(cx.client.clone(), &cx.config_ns);
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for p in list.items {
                    if due(&p) {
                        check(cx, &api, &p).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing Profiles to validate them"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `p` changed since its last check, or that check is old.
fn due(p: &ProfileResource) -> bool {
    let Some(v) = p.status.as_ref().and_then(|s| s.validation.as_ref()) else {
        return true;
    };
    if Some(v.observed_generation) != p.metadata.generation {
        return true;
    }
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let age = time::OffsetDateTime::parse(&v.checked_at, rfc3339)
        .ok()
        .and_then(|t| Duration::try_from(time::OffsetDateTime::now_utc() - t).ok())
        .unwrap_or(Duration::MAX);
    age >= if v.phase == VALID {
        RECHECK_VALID
    } else {
        RECHECK_FAILED
    }
}

async fn check(cx: &ClusterCtx, api: &Api<ProfileResource>, p: &ProfileResource) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let probes = match super::resolve::profile(cx, &name, false).await {
        Ok((profile, credentials)) => crate::storage::ops::validate_profile(&profile, &credentials)
            .await
            .map(|probes| {
                probes
                    .into_iter()
                    .map(|p| ProbeResult {
                        check: p.check,
                        ok: p.ok,
                        detail: p.detail,
                    })
                    .collect::<Vec<_>>()
            }),
        Err(e) => Err(e),
    };
    let (phase, message, probes) = match probes {
        Ok(probes) => {
            let failed: Vec<String> = probes
                .iter()
                .filter(|p| !p.ok)
                .map(|p| format!("{}: {}", p.check, p.detail))
                .collect();
            if failed.is_empty() {
                (VALID, String::new(), probes)
            } else {
                (FAILED, failed.join("; "), probes)
            }
        }
        Err(e) => (FAILED, format!("{e:#}"), vec![]),
    };
    let status = ProfileStatus {
        validation: Some(ProfileValidation {
            phase: phase.into(),
            observed_generation: p.metadata.generation.unwrap_or_default(),
            checked_at: now_rfc3339(),
            message: message.clone(),
            probes,
        }),
    };
    let patch = serde_json::json!({"status": status});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) if phase == FAILED => {
            tracing::warn!(profile = %name, why = %message, "Profile failed its validation")
        }
        Ok(_) => tracing::info!(profile = %name, "Profile validated"),
        Err(e) => tracing::warn!(profile = %name, error = %e, "recording the Profile's validation"),
    }
}

/// Refuse a Profile whose current generation failed its last check.
pub fn refuse_if_failed(p: &ProfileResource) -> Result<()> {
    let Some(v) = p.status.as_ref().and_then(|s| s.validation.as_ref()) else {
        return Ok(());
    };
    if v.phase == FAILED && Some(v.observed_generation) == p.metadata.generation {
        bail!(
            "Profile {} failed its validation at {}: {}. Fix the Profile or what it references; the daemon checks it again when it changes and every {}s (`kubectl get profile {0} -o yaml` shows each probe)",
            p.metadata.name.as_deref().unwrap_or_default(),
            v.checked_at,
            v.message,
            RECHECK_FAILED.as_secs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProfileSpec, ProfileType};

    fn profile(generation: i64, v: Option<(&str, i64, &str)>) -> ProfileResource {
        let spec: ProfileSpec =
            serde_json::from_value(serde_json::json!({"type": "file", "path": "/x"})).unwrap();
        let mut p = ProfileResource::new("default", spec);
        assert!(matches!(p.spec.kind, ProfileType::File));
        p.metadata.generation = Some(generation);
        p.status = v.map(|(phase, g, at)| ProfileStatus {
            validation: Some(ProfileValidation {
                phase: phase.into(),
                observed_generation: g,
                checked_at: at.into(),
                message: "list: access denied".into(),
                probes: vec![],
            }),
        });
        p
    }

    #[test]
    fn a_change_or_an_old_check_is_due_and_only_a_current_failure_refuses() {
        let now = now_rfc3339();
        assert!(due(&profile(1, None)));
        assert!(!due(&profile(1, Some((VALID, 1, &now)))));
        assert!(due(&profile(2, Some((VALID, 1, &now)))));
        assert!(due(&profile(1, Some((VALID, 1, "2020-01-01T00:00:00Z")))));
        assert!(!due(&profile(1, Some((FAILED, 1, &now)))));
        let e = refuse_if_failed(&profile(1, Some((FAILED, 1, &now))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Profile default failed its validation") && e.contains("access denied"));
        // A failure of an older generation says nothing about the Profile as it is now.
        assert!(refuse_if_failed(&profile(2, Some((FAILED, 1, &now)))).is_ok());
        assert!(refuse_if_failed(&profile(1, Some((VALID, 1, &now)))).is_ok());
    }
}
