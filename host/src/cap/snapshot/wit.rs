//! `snapshot` host functions: grant check, the call, the audit entry.

use super::{Ref, SnapInfo, Snapshot};
use crate::cap::{ActionScope, CapView, HostResult};
use crate::wit::WitError;
use crate::wit::coffer::blueprint::snapshot;
use std::time::{Duration, Instant};

fn vol(v: &snapshot::VolumeRef) -> Ref {
    Ref {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
    }
}

fn snap(v: &snapshot::SnapshotRef) -> Ref {
    Ref {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
    }
}

fn info(i: SnapInfo) -> snapshot::SnapshotInfo {
    snapshot::SnapshotInfo {
        snapshot: snapshot::SnapshotRef {
            namespace: i.snapshot.namespace,
            name: i.snapshot.name,
        },
        source: snapshot::VolumeRef {
            namespace: i.source.namespace,
            name: i.source.name,
        },
        ready: i.ready,
        restore_size: i.restore_size,
    }
}

async fn call<T>(
    cap: &Snapshot,
    scope: &ActionScope,
    call_name: &str,
    target: &str,
    work: impl Future<Output = Result<T, WitError>>,
) -> HostResult<T> {
    let started = Instant::now();
    let res = match cap.grant.check() {
        Err(e) => Err(e),
        Ok(()) => work.await,
    };
    scope.audit(call_name, target, "", started, &res, 0);
    Ok(res)
}

impl snapshot::Host for CapView<'_, Snapshot> {
    async fn create(
        &mut self,
        source: snapshot::VolumeRef,
        class: Option<String>,
        labels: Vec<(String, String)>,
    ) -> HostResult<snapshot::SnapshotInfo> {
        let (b, s) = (self.cap.backend.clone(), vol(&source));
        let r = call(
            self.cap,
            self.scope,
            "snapshot.create",
            &source.name,
            async { b.create(&s, class.as_deref(), &labels).await },
        )
        .await?;
        Ok(r.map(info))
    }

    async fn wait_ready(
        &mut self,
        snapshot: snapshot::SnapshotRef,
        timeout_ms: u64,
    ) -> HostResult<snapshot::SnapshotInfo> {
        // Never past the action's own deadline.
        let timeout = Duration::from_millis(timeout_ms).min(self.scope.limits.timeout);
        let (b, s) = (self.cap.backend.clone(), snap(&snapshot));
        let r = call(
            self.cap,
            self.scope,
            "snapshot.wait-ready",
            &snapshot.name,
            async { b.wait_ready(&s, timeout).await },
        )
        .await?;
        Ok(r.map(info))
    }

    async fn restore(
        &mut self,
        snapshot: snapshot::SnapshotRef,
        target: snapshot::VolumeRef,
        storage_class: Option<String>,
    ) -> HostResult<()> {
        let (b, s, t) = (self.cap.backend.clone(), snap(&snapshot), vol(&target));
        let what = format!("{} -> {}", snapshot.name, target.name);
        call(self.cap, self.scope, "snapshot.restore", &what, async {
            b.restore(&s, &t, storage_class.as_deref()).await
        })
        .await
    }

    async fn delete(&mut self, snapshot: snapshot::SnapshotRef) -> HostResult<()> {
        let (b, s) = (self.cap.backend.clone(), snap(&snapshot));
        call(
            self.cap,
            self.scope,
            "snapshot.delete",
            &snapshot.name,
            async { b.delete(&s).await },
        )
        .await
    }
}
