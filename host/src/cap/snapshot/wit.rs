//! `snapshot` host functions: grant check, the call, the audit entry.

use super::{Ref, SnapInfo};
use crate::cap::{ActionContext, HostResult};
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::coffer::blueprint::snapshot;
use std::sync::Arc;
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
    ctx: Arc<ActionContext>,
    cap: &str,
    target: &str,
    work: impl Future<Output = Result<T, WitError>>,
) -> HostResult<T> {
    let started = Instant::now();
    let res = match ctx.check_snapshot() {
        Err(e) => Err(e),
        Ok(()) => work.await,
    };
    ctx.audit(cap, target, "", started, &res, 0);
    Ok(res)
}

impl snapshot::Host for HostState {
    async fn create(
        &mut self,
        source: snapshot::VolumeRef,
        class: Option<String>,
        labels: Vec<(String, String)>,
    ) -> HostResult<snapshot::SnapshotInfo> {
        let (b, s) = (self.ctx.snapshots.clone(), vol(&source));
        let r = call(self.ctx.clone(), "snapshot.create", &source.name, async {
            b.create(&s, class.as_deref(), &labels).await
        })
        .await?;
        Ok(r.map(info))
    }

    async fn wait_ready(
        &mut self,
        snapshot: snapshot::SnapshotRef,
        timeout_ms: u64,
    ) -> HostResult<snapshot::SnapshotInfo> {
        // Never past the action's own deadline.
        let timeout = Duration::from_millis(timeout_ms).min(self.ctx.limits.timeout);
        let (b, s) = (self.ctx.snapshots.clone(), snap(&snapshot));
        let r = call(
            self.ctx.clone(),
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
        let (b, s, t) = (self.ctx.snapshots.clone(), snap(&snapshot), vol(&target));
        let what = format!("{} -> {}", snapshot.name, target.name);
        call(self.ctx.clone(), "snapshot.restore", &what, async {
            b.restore(&s, &t, storage_class.as_deref()).await
        })
        .await
    }

    async fn delete(&mut self, snapshot: snapshot::SnapshotRef) -> HostResult<()> {
        let (b, s) = (self.ctx.snapshots.clone(), snap(&snapshot));
        call(self.ctx.clone(), "snapshot.delete", &snapshot.name, async {
            b.delete(&s).await
        })
        .await
    }
}
