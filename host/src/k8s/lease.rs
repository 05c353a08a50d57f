//! Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews
//! well within `leaseDurationSeconds`; a candidate takes a lease it has seen unchanged for
//! a whole duration by its own clock (the holder's timestamps are from another machine's
//! clock and are never compared with ours). Every write carries the resourceVersion it read,
//! so two candidates racing for an expired lease cannot both win (the loser gets a 409), and
//! every API call has a deadline, so a hung connection cannot keep a leader leading.

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct LeaseLock {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// The lease as last seen (holder and renewTime, as written by its holder) and when this
    /// instance saw it change.
    pub observed: Mutex<Option<(String, Instant)>>,
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
    pub fn new(api: Api<Lease>, name: String, identity: String, duration: Duration) -> LeaseLock {
        LeaseLock {
            api,
            name,
            identity,
            duration,
            observed: Mutex::new(None),
        }
    }

    /// An API call with a deadline: a third of the lease's duration.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>> {
        tokio::time::timeout(self.duration / 3, call)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{what} Lease {}: no answer within {:?}",
                    self.name,
                    self.duration / 3
                )
            })
    }

    /// Whether a lease held by someone else has gone unrenewed for a whole duration, as
    /// this instance observed it.
    fn expired(&self, seen: String, duration: Duration) -> bool {
        let mut observed = self.observed.lock().unwrap();
        match observed.as_ref() {
            Some((last, since)) if *last == seen => since.elapsed() >= duration,
            _ => {
                *observed = Some((seen, Instant::now()));
                false
            }
        }
    }

    /// One attempt to take or renew the lease.
    pub async fn try_acquire(&self) -> Result<Holder> {
        let now = Timestamp::now();
        let secs = self.duration.as_secs().max(1) as i32;
        let current = self
            .bounded("reading", self.api.get_opt(&self.name))
            .await?
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
            return match self
                .bounded("creating", self.api.create(&PostParams::default(), &lease))
                .await?
            {
                Ok(_) => Ok(Holder::Me),
                Err(e) if conflict(&e) => Ok(Holder::Other("(just created by another)".into())),
                Err(e) => Err(e).with_context(|| format!("creating Lease {}", self.name)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_for =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64);
        let seen = format!(
            "{holder} {}",
            spec.renew_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default()
        );
        let released = spec.renew_time.is_none();
        let expired = released || self.expired(seen, held_for);
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
            .bounded(
                "updating",
                self.api.replace(&self.name, &PostParams::default(), &lease),
            )
            .await?
        {
            Ok(_) => Ok(Holder::Me),
            Err(e) if conflict(&e) => Ok(Holder::Other(holder)),
            Err(e) => Err(e).with_context(|| format!("updating Lease {}", self.name)),
        }
    }

    /// Give the lease up (graceful shutdown), so a standby takes over at once instead of
    /// waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Ok(Some(mut lease))) = self.bounded("reading", self.api.get_opt(&self.name)).await
        else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .bounded(
                "releasing",
                self.api.replace(&self.name, &PostParams::default(), &lease),
            )
            .await
        {
            Ok(Ok(_)) => tracing::info!(lease = %self.name, "released the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "releasing the lease"),
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
