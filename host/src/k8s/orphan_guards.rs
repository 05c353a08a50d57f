//! Guards left armed by a daemon that died mid-action: the leader that settles the
//! ActionSet runs them in the subject's pod first. The ActionSet's status is the tenant's
//! to write, so only guards whose seal (the cluster key's MAC over what runs where, for
//! this ActionSet) verifies are run: a tenant cannot make the daemon exec a command by
//! writing one into a status.

use super::kinds::ActionSetResource;
use super::run::ClusterCtx;
use crate::cap::exec::{ExecBackend, PodExec, PodTarget};
use crate::cap::runtime::{GUARD_TIMEOUT, fire_recorded, recorded_spec, run_command, send_request};
use crate::model::{ActionKind, GUARD_SEAL, GuardRecord};
use crate::storage::manifest::ManifestKey;

/// Run the armed, sealed guards of `set`, last registered first. The guards as they ended
/// and a sentence for the ActionSet's error (empty when none was armed).
pub async fn fire(
    cx: &ClusterCtx,
    key: &ManifestKey,
    set: &ActionSetResource,
) -> (Vec<GuardRecord>, String) {
    let mut guards = super::kinds::status(set).guards;
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec = &set.spec;
    // The subject's pods, where the runner ran them (a restore's may be in its target
    // namespace).
    let subject_ns = match (&spec.target_namespace, spec.kind()) {
        (Some(t), ActionKind::Restore) => t.clone(),
        _ => ns.clone(),
    };
    let backend = super::parse_subject(&spec.workload).map(|(sk, wname)| {
        PodExec::new(
            cx.client.clone(),
            PodTarget {
                api_version: sk.api_version.into(),
                kind: sk.kind.into(),
                namespace: subject_ns,
                name: wname,
                container: None,
            },
            name.clone(),
        )
    });
    // The Signers request guards send with, from the config namespace as they are now.
    let names: Vec<&str> = guards
        .iter()
        .filter_map(|g| g.request.as_ref().map(|r| r.signer.as_str()))
        .collect();
    let signers = match names.is_empty() {
        true => None,
        false => Some(
            super::resolve::signers_named(
                cx,
                &names,
                "which a guard of this action sends its request with",
            )
            .await,
        ),
    };
    let (backend, signers, ns, name) = (&backend, &signers, &ns, &name);
    let note = fire_recorded(&mut guards, |g| async move {
        let fields = g.seal_fields(ns, name);
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let sealed = g
            .seal
            .as_deref()
            .is_some_and(|s| key.check_tag(GUARD_SEAL, &fields, s));
        if !sealed {
            return Err(
                "not run: its seal does not verify (the record was changed outside coffer)".into(),
            );
        }
        if let Some(r) = &g.request {
            return match signers {
                Some(Ok(s)) => send_request(s, r, GUARD_TIMEOUT).await,
                Some(Err(e)) => Err(format!("{e:#}")),
                None => unreachable!("a request guard names its Signer"),
            };
        }
        match &backend {
            Ok(b) => run_command(b as &dyn ExecBackend, recorded_spec(&g), GUARD_TIMEOUT)
                .await
                .map(|()| "exit 0".into()),
            Err(e) => Err(format!("its workload {:?}: {e:#}", spec.workload)),
        }
    })
    .await;
    (guards, note)
}
