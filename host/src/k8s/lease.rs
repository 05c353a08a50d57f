//! Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews
//! `renewTime` well within `leaseDurationSeconds`; anyone may take a lease whose renewal is
//! older than its duration. Every write carries the resourceVersion it read, so two
//! candidates racing for an expired lease cannot both win (the loser gets a 409).

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use std::time::Duration;

pub struct LeaseLock {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// Who holds the lease after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    Me,
    Other(String),
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    /// One attempt to take or renew the lease.
    pub async fn try_acquire(&self) -> Result<Holder> {
        let now = Timestamp::now();
        let secs = self.duration.as_secs().max(1) as i32;
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .with_context(|| format!("reading Lease {}", self.name))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Holder::Me),
                Err(e) if conflict(&e) => Ok(Holder::Other("(just created by another)".into())),
                Err(e) => Err(e).with_context(|| format!("creating Lease {}", self.name)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_for = spec.lease_duration_seconds.unwrap_or(secs);
        let expired = spec
            .renew_time
            .as_ref()
            .is_none_or(|t| t.0 + SignedDuration::from_secs(i64::from(held_for)) < now);
        if holder != self.identity && !holder.is_empty() && !expired {
            return Ok(Holder::Other(holder));
        }
        if holder != self.identity {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(secs);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Holder::Me),
            Err(e) if conflict(&e) => Ok(Holder::Other(holder)),
            Err(e) => Err(e).with_context(|| format!("updating Lease {}", self.name)),
        }
    }

    /// Give the lease up (graceful shutdown), so a standby takes over at once instead of
    /// waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the lease"),
        }
    }

    /// Wait until this instance holds the lease.
    pub async fn acquire(&self) -> Result<()> {
        let mut last = String::new();
        loop {
            match self.try_acquire().await {
                Ok(Holder::Me) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return Ok(());
                }
                Ok(Holder::Other(h)) => {
                    if h != last {
                        tracing::info!(lease = %self.name, holder = %h, "another instance leads; standing by");
                        last = h;
                    }
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "leader election"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renew until renewals fail for two thirds of the lease's duration (before another
    /// instance may take it), or another instance took it; then return, and the caller must
    /// stop leading.
    pub async fn hold(&self) -> String {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(Holder::Me) => last_ok = tokio::time::Instant::now(),
                Ok(Holder::Other(h)) => return format!("Lease {} is now held by {h}", self.name),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "renewing the lease");
                    if last_ok.elapsed() >= self.duration * 2 / 3 {
                        return format!(
                            "could not renew Lease {} for {:?}: {e:#}",
                            self.name, self.duration
                        );
                    }
                }
            }
        }
    }
}
