//! `snapshot` host functions: grant check, the call, the audit entry; and snapshot 0.1.0
//! (no `cut-at`, no groups) for plugins built against it, answered by the same calls.

use super::archive::{AddedFile, Commit};
use super::{Ref, SnapInfo, Snapshot};
use crate::cap::{ActionScope, CapView, HostResult};
use crate::wit::WitError;
use crate::wit::abi::{snapshot, v0_1};
use crate::wit::retype;
use snapshot::{HostVolumeImport, VolumeImport};
use std::time::{Duration, Instant};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// Bytes buffered between an import's stream and its unpacking.
const IMPORT_BUDGET: usize = 1 << 20;
/// The most bytes a plugin may add to one import (`add-file`): small files beside the
/// archive, not a second way in for its bulk.
const ADDED_BYTES: usize = 1 << 20;

/// An import a plugin holds: its stream until taken, then its unpacking until finished.
pub struct ImportHandle {
    target: String,
    stream: Option<crate::cap::exec::BoxWrite>,
    task: Option<tokio::task::JoinHandle<Result<u64, WitError>>>,
    commit: Option<tokio::sync::oneshot::Sender<Commit>>,
    /// Files to add once the archive is unpacked.
    added: Vec<AddedFile>,
}

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
        cut_at: i.cut_at,
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

    async fn create_group(
        &mut self,
        sources: Vec<snapshot::VolumeRef>,
        class: Option<String>,
        labels: Vec<(String, String)>,
    ) -> HostResult<Vec<snapshot::SnapshotInfo>> {
        let b = self.cap.backend.clone();
        let refs: Vec<Ref> = sources.iter().map(vol).collect();
        let names = refs
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let quiesced = self.scope.quiesce.is_open();
        let r = call(
            self.cap,
            self.scope,
            "snapshot.create-group",
            &names,
            async {
                super::create_group(b.as_ref(), &refs, class.as_deref(), &labels, quiesced).await
            },
        )
        .await?;
        Ok(r.map(|v| v.into_iter().map(info).collect()))
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

    async fn export_tar(
        &mut self,
        snapshot: snapshot::SnapshotRef,
        exclude: Vec<String>,
    ) -> HostResult<Resource<DynInputStream>> {
        let (b, s) = (self.cap.backend.clone(), snap(&snapshot));
        let r = call(
            self.cap,
            self.scope,
            "snapshot.export-tar",
            &snapshot.name,
            async {
                let exclude = relative_paths("exclude", &exclude)?;
                b.export_tar(&s, exclude).await
            },
        )
        .await?;
        Ok(match r {
            Ok(reader) => {
                let stream: DynInputStream = Box::new(AsyncReadStream::new(reader));
                Ok(self.table.push(stream)?)
            }
            Err(e) => Err(e),
        })
    }

    async fn import_tar(
        &mut self,
        target: snapshot::VolumeRef,
    ) -> HostResult<Resource<VolumeImport>> {
        let (b, t) = (self.cap.backend.clone(), vol(&target));
        let r = call(
            self.cap,
            self.scope,
            "snapshot.import-tar",
            &target.name,
            async { b.import_tar(&t).await },
        )
        .await?;
        Ok(match r {
            Ok(import) => {
                let (stream, task, commit) = import.into_parts();
                let h = self.table.push(ImportHandle {
                    target: target.name,
                    stream: Some(stream),
                    task: Some(task),
                    commit: Some(commit),
                    added: Vec::new(),
                })?;
                Ok(retype(&h))
            }
            Err(e) => Err(e),
        })
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

/// Paths inside a volume, as a plugin names them: relative, no `..`, no empty parts.
fn relative_paths(what: &str, paths: &[String]) -> Result<Vec<std::path::PathBuf>, WitError> {
    paths
        .iter()
        .map(|p| {
            let ok = !p.is_empty()
                && !p.starts_with('/')
                && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            if ok {
                Ok(std::path::PathBuf::from(p))
            } else {
                Err(WitError::InvalidArgument(format!(
                    "{what}: {p:?} is not a path inside the volume (relative, no `..`)"
                )))
            }
        })
        .collect()
}

impl HostVolumeImport for CapView<'_, Snapshot> {
    async fn take_stream(
        &mut self,
        h: Resource<VolumeImport>,
    ) -> wasmtime::Result<Option<Resource<DynOutputStream>>> {
        let i = self.table.get_mut(&retype::<_, ImportHandle>(&h))?;
        let Some(w) = i.stream.take() else {
            return Ok(None);
        };
        let stream: DynOutputStream = Box::new(AsyncWriteStream::new(IMPORT_BUDGET, w));
        Ok(Some(self.table.push(stream)?))
    }

    async fn finish(&mut self, h: Resource<VolumeImport>, keep: bool) -> HostResult<u64> {
        let started = Instant::now();
        let i = self.table.get_mut(&retype::<_, ImportHandle>(&h))?;
        let target = i.target.clone();
        let res = match (i.task.take(), i.commit.take()) {
            (Some(task), Some(commit)) => {
                // The stream must be closed for the unpacking to see the archive's end.
                i.stream = None;
                let how = if keep {
                    Commit::Keep(std::mem::take(&mut i.added))
                } else {
                    Commit::Discard
                };
                super::archive::Import::finish(task, commit, how).await
            }
            _ => Err(WitError::InvalidArgument(
                "this import was finished already".into(),
            )),
        };
        let bytes = *res.as_ref().unwrap_or(&0);
        let args = if keep { "keep" } else { "discard" };
        self.scope.audit(
            "snapshot.import.finish",
            &target,
            args,
            started,
            &res,
            bytes,
        );
        Ok(res)
    }

    async fn add_file(
        &mut self,
        h: Resource<VolumeImport>,
        path: String,
        data: Vec<u8>,
        append: bool,
    ) -> HostResult<()> {
        let started = Instant::now();
        let i = self.table.get_mut(&retype::<_, ImportHandle>(&h))?;
        let res = relative_paths("add-file", std::slice::from_ref(&path)).and_then(|mut p| {
            let total: usize = i.added.iter().map(|f| f.data.len()).sum();
            if i.commit.is_none() {
                Err(WitError::InvalidArgument(
                    "this import was finished already".into(),
                ))
            } else if total + data.len() > ADDED_BYTES {
                Err(WitError::Limit(format!(
                    "add-file: at most {ADDED_BYTES} bytes may be added to one import; \
                     ship larger files in the archive"
                )))
            } else {
                i.added.push(AddedFile {
                    path: p.remove(0),
                    data,
                    append,
                });
                Ok(())
            }
        });
        let target = format!("{}:{path}", i.target);
        let args = if append { "append" } else { "new" };
        self.scope
            .audit("snapshot.import.add-file", &target, args, started, &res, 0);
        Ok(res)
    }

    async fn drop(&mut self, h: Resource<VolumeImport>) -> wasmtime::Result<()> {
        // Unfinished: its unpacking sees no commit and leaves nothing at the target.
        self.table.delete(retype::<_, ImportHandle>(&h))?;
        Ok(())
    }
}

fn info_v0_1(i: snapshot::SnapshotInfo) -> v0_1::snapshot::SnapshotInfo {
    v0_1::snapshot::SnapshotInfo {
        snapshot: v0_1::snapshot::SnapshotRef {
            namespace: i.snapshot.namespace,
            name: i.snapshot.name,
        },
        source: v0_1::snapshot::VolumeRef {
            namespace: i.source.namespace,
            name: i.source.name,
        },
        ready: i.ready,
        restore_size: i.restore_size,
    }
}

fn vol_v0_2(v: v0_1::snapshot::VolumeRef) -> snapshot::VolumeRef {
    snapshot::VolumeRef {
        namespace: v.namespace,
        name: v.name,
    }
}

fn snap_v0_2(v: v0_1::snapshot::SnapshotRef) -> snapshot::SnapshotRef {
    snapshot::SnapshotRef {
        namespace: v.namespace,
        name: v.name,
    }
}

impl v0_1::snapshot::Host for CapView<'_, Snapshot> {
    async fn create(
        &mut self,
        source: v0_1::snapshot::VolumeRef,
        class: Option<String>,
        labels: Vec<(String, String)>,
    ) -> HostResult<v0_1::snapshot::SnapshotInfo> {
        let r = snapshot::Host::create(self, vol_v0_2(source), class, labels).await?;
        Ok(r.map(info_v0_1))
    }

    async fn wait_ready(
        &mut self,
        snap: v0_1::snapshot::SnapshotRef,
        timeout_ms: u64,
    ) -> HostResult<v0_1::snapshot::SnapshotInfo> {
        let r = snapshot::Host::wait_ready(self, snap_v0_2(snap), timeout_ms).await?;
        Ok(r.map(info_v0_1))
    }

    async fn restore(
        &mut self,
        snap: v0_1::snapshot::SnapshotRef,
        target: v0_1::snapshot::VolumeRef,
        storage_class: Option<String>,
    ) -> HostResult<()> {
        snapshot::Host::restore(self, snap_v0_2(snap), vol_v0_2(target), storage_class).await
    }

    async fn delete(&mut self, snap: v0_1::snapshot::SnapshotRef) -> HostResult<()> {
        snapshot::Host::delete(self, snap_v0_2(snap)).await
    }
}
