//! The WIT side of `location`: access checks, key confinement, transfers as host tasks.

use super::{BoundLocation, Locations, check_key};
use crate::cap::{ActionScope, CapView, HostResult};
use crate::model::ObjectRecord;
use crate::storage::keys::{MANIFEST_NAME, logical_key, stored_variants};
use crate::storage::pipeline::{self, Counters, Sink};
use crate::wit::abi::location::{
    Compression, Host, HostStore, HostTransfer, ObjectInfo, PutOptions, Store, Transfer,
};
use crate::wit::{WitError, retype};
use coffer_manifest::LocationAccess;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// A location handle held by a plugin.
pub struct StoreHandle {
    name: String,
    bound: Arc<BoundLocation>,
}

/// A copy the host drives. Dropping it cancels the copy: an upload then aborts its
/// multipart upload before its task ends (the action waits for that); a download just stops.
pub struct TransferHandle {
    task: Option<JoinHandle<Result<ObjectInfo, WitError>>>,
    result: Option<Result<ObjectInfo, WitError>>,
    bytes: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Drop for TransferHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn info_of(rec: &ObjectRecord) -> ObjectInfo {
    ObjectInfo {
        key: rec.key.clone(),
        size: rec.size,
        stored_size: rec.stored_size,
        sha256: rec.sha256.clone(),
        compression: if rec.compression == "zstd" {
            Compression::Zstd
        } else {
            Compression::None
        },
        metadata: vec![],
    }
}

/// The record of an object this action may read: one of the restore point's, or one it
/// wrote itself. Reads are always verified against such a record.
fn known_object(scope: &ActionScope, bound: &BoundLocation, key: &str) -> Option<ObjectRecord> {
    if let Some(r) = bound.expected.get(key) {
        return Some(r.clone());
    }
    let records = scope.records.lock().unwrap();
    records.objects.iter().rev().find(|o| o.key == key).cloned()
}

type View<'a> = CapView<'a, Locations>;

impl View<'_> {
    pub(super) fn bound(
        &self,
        h: &Resource<Store>,
    ) -> wasmtime::Result<(String, Arc<BoundLocation>)> {
        let s = self.table.get(&retype::<_, StoreHandle>(h))?;
        Ok((s.name.clone(), s.bound.clone()))
    }

    /// Access check for one operation: the grant (declared AND granted) and what this
    /// action may do at this location.
    fn may(
        &self,
        name: &str,
        bound: &BoundLocation,
        access: LocationAccess,
    ) -> Result<(), WitError> {
        self.cap.grant.check(name, access)?;
        if !bound.access.contains(&access) {
            return Err(WitError::Denied(format!(
                "location {name:?}: a {} action may not {} here",
                self.scope.actor.action,
                access.as_str()
            )));
        }
        Ok(())
    }

    /// A key a plugin may use: well formed, and holding no secret value (keys are stored
    /// and listed in the clear, in the manifest too).
    fn key_ok(&self, key: &str) -> Result<(), WitError> {
        check_key(key)?;
        if self.scope.redactor.redact(key) != key {
            return Err(WitError::InvalidArgument(
                "the object key contains one of the action's secret values; keys are stored in the clear".into(),
            ));
        }
        Ok(())
    }

    /// Access and key checks of an object to write.
    pub(super) fn writable(
        &self,
        name: &str,
        bound: &BoundLocation,
        key: &str,
    ) -> Result<(), WitError> {
        self.may(name, bound, LocationAccess::Write)
            .and_then(|_| self.key_ok(key))
    }

    /// Access check, key check and the record of an object to read: reads are only of
    /// objects with a record (the restore point's, or this action's own), so every read is
    /// verified.
    fn readable(
        &self,
        name: &str,
        bound: &BoundLocation,
        key: &str,
    ) -> Result<ObjectRecord, WitError> {
        self.may(name, bound, LocationAccess::Read)?;
        self.key_ok(key)?;
        known_object(self.scope, bound, key).ok_or_else(|| {
            WitError::NotFound(format!("object {key:?} is not in this restore point"))
        })
    }

    /// A transfer's byte counter, and the counters it updates (its own and the action's).
    fn counters(&self) -> (Arc<AtomicU64>, Counters) {
        let bytes = Arc::new(AtomicU64::new(0));
        let counters = Counters {
            transfer: bytes.clone(),
            action: self.scope.progress.bytes_counter(),
        };
        (bytes, counters)
    }

    /// Run a transfer on its own task, tracked by the action, cancelled through `cancel`
    /// when its handle goes. A download may simply stop where it is; an upload (`put`)
    /// watches `cancel` itself so it can abort cleanly first.
    fn spawn_transfer(
        &mut self,
        bytes: Arc<AtomicU64>,
        cancel: CancellationToken,
        fut: impl Future<Output = Result<ObjectInfo, WitError>> + Send + 'static,
    ) -> wasmtime::Result<Resource<Transfer>> {
        // The transfer runs on its own task: keep it in the action's span.
        let task = self
            .scope
            .transfers
            .spawn(tracing::Instrument::in_current_span(fut));
        let h = self.table.push(TransferHandle {
            task: Some(task),
            result: None,
            bytes,
            cancel,
        })?;
        Ok(retype(&h))
    }

    /// Upload `src` as `key` on a transfer task (checks done): the pipeline, or the mover
    /// that makes the stream's bytes itself.
    pub(super) fn upload(
        &mut self,
        bound: Arc<BoundLocation>,
        key: String,
        src: DynInputStream,
        opts: PutOptions,
        mover: Option<(
            crate::cap::exec::MoverStart,
            Arc<dyn crate::cap::exec::ExecBackend>,
        )>,
    ) -> wasmtime::Result<Resource<Transfer>> {
        let level = bound
            .zstd_level
            .filter(|_| opts.compression == Compression::Zstd);
        let (bytes, counters) = self.counters();
        let scope = self.scope.clone();
        let cancel = CancellationToken::new();
        let cancelled = cancel.clone();
        let fut = async move {
            // Each upload holds multipart buffers: a plugin that starts many waits for slots
            // rather than growing the host's memory.
            let _slot = tokio::select! {
                _ = cancelled.cancelled() => return Err(WitError::Cancelled),
                slot = bound.uploads.clone().acquire_owned() => slot,
            };
            let started = Instant::now();
            if let Some((start, exec)) = mover {
                drop(src);
                let rec = by_mover(
                    &scope, &bound, &key, level, counters, cancelled, start, exec,
                )
                .await;
                scope
                    .records
                    .lock()
                    .unwrap()
                    .objects
                    .extend(rec.clone().ok());
                return rec.map(|r| info_of(&r));
            }
            let res = pipeline::upload(src, &bound.prefix, &key, level, &counters, &cancelled)
                .await
                .map_err(|e| WitError::Io(format!("location.put {key}: {e}")));
            let moved = counters.transfer.load(Ordering::Relaxed);
            scope.audit("transfer.put", &key, "", started, &res, moved);
            let rec = res?;
            scope.records.lock().unwrap().objects.push(rec.clone());
            Ok(info_of(&rec))
        };
        self.spawn_transfer(bytes, cancel, fut)
    }
}

impl Host for View<'_> {
    async fn open(&mut self, name: String) -> HostResult<Resource<Store>> {
        let started = Instant::now();
        let bound = &self.cap.bound.0;
        let res = bound.get(&name).cloned().ok_or_else(|| {
            WitError::NotFound(format!(
                "location {name:?} is not bound to this action (bound: {})",
                bound.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        });
        self.scope
            .audit("location.open", &name, "", started, &res, 0);
        match res {
            Ok(bound) => Ok(Ok(retype(&self.table.push(StoreHandle { name, bound })?))),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// `put` through a mover: the command runs beside the workload and its output goes
/// straight to the store; the process's wait gets how it ended.
#[allow(clippy::too_many_arguments)]
async fn by_mover(
    scope: &ActionScope,
    bound: &BoundLocation,
    key: &str,
    level: Option<i32>,
    counters: Counters,
    cancel: CancellationToken,
    start: crate::cap::exec::MoverStart,
    exec: Arc<dyn crate::cap::exec::ExecBackend>,
) -> Result<ObjectRecord, WitError> {
    let started = Instant::now();
    let moved = counters.transfer.clone();
    // Killing the process (its timeout) stops the mover as the transfer's end does.
    let stop = cancel.child_token();
    let killed = start.killed.clone();
    let linked = stop.clone();
    let watch = tokio::spawn(async move {
        killed.cancelled().await;
        linked.cancel();
    });
    let upload = crate::cap::exec::MoverUpload {
        prefix: bound.prefix.clone(),
        key: key.to_string(),
        zstd_level: level,
        counters,
        cancel: stop,
    };
    let ran = exec.run_mover(start.spec, upload).await;
    watch.abort();
    let (res, exit, pod) = match ran {
        Ok(r) => (Ok(r.record), Ok(r.exit), r.pod),
        Err(e) => {
            // What a mover says may quote the command's stderr: no secret goes further.
            let e = match e {
                WitError::Io(m) => WitError::Io(scope.redactor.redact(&m)),
                other => other,
            };
            (Err(e.clone()), Err(e), String::new())
        }
    };
    let _ = start.exit.send(exit);
    let res = res.map_err(|e| match e {
        WitError::Io(m) => WitError::Io(format!("location.put {key} (by a mover): {m}")),
        other => other,
    });
    let detail = if pod.is_empty() {
        "mover".to_string()
    } else {
        format!("mover pod {pod}")
    };
    scope.audit(
        "transfer.put",
        key,
        &detail,
        started,
        &res,
        moved.load(Ordering::Relaxed),
    );
    res
}

impl HostStore for View<'_> {
    async fn put(
        &mut self,
        h: Resource<Store>,
        key: String,
        src: Resource<DynInputStream>,
        opts: PutOptions,
    ) -> HostResult<Resource<Transfer>> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let claim = self.scope.movers.lock().unwrap().remove(&src.rep());
        // Take the stream even when refusing, so the guest's handle does not dangle.
        let src: DynInputStream = self.table.delete(src)?;
        let checked = self.writable(&name, &bound, &key);
        self.scope
            .audit("location.put", &key, "stream", started, &checked, 0);
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        // A process the exec backend deferred may run in a mover that uploads its output
        // itself: then no byte of it passes through here. Claimed now, before the plugin
        // can wait for the process (which would start it here).
        let mut mover = None;
        if let (Some(c), Some(exec)) = (claim, &self.cap.exec)
            && bound.prefix.parts.is_some()
            && exec.wants_mover(&key)
            && let Some(start) = c.claim().await
        {
            mover = Some((start, exec.clone()));
        }
        Ok(Ok(self.upload(bound, key, src, opts, mover)?))
    }

    async fn get_into(
        &mut self,
        h: Resource<Store>,
        key: String,
        dst: Resource<DynOutputStream>,
    ) -> HostResult<Resource<Transfer>> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let tell_length = self.scope.stdin_lengths.lock().unwrap().remove(&dst.rep());
        let mut dst: DynOutputStream = self.table.delete(dst)?;
        let rec = self.readable(&name, &bound, &key);
        self.scope
            .audit("location.get-into", &key, "stream", started, &rec, 0);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // A process's stdin learns how many bytes are coming (the download writes exactly
        // `size`, or fails).
        if let Some(tell) = tell_length {
            tell(rec.size);
        }
        let (bytes, counters) = self.counters();
        let scope = self.scope.clone();
        let cancel = CancellationToken::new();
        let cancelled = cancel.clone();
        let fut = async move {
            let started = Instant::now();
            let res = match bound.prefix.path(&rec.stored_key) {
                Err(e) => Err(e),
                Ok(path) => {
                    let pinned = bound.verified_version(&rec.stored_key);
                    let pin = pipeline::Pin::from(pinned.as_ref());
                    // A download writes nothing to the store: stopping it anywhere is safe.
                    tokio::select! {
                        _ = cancelled.cancelled() => Err("cancelled: the action ended".to_string()),
                        r = pipeline::download(
                            bound.prefix.store.as_ref(),
                            &path,
                            &rec,
                            Sink::Stream(&mut dst),
                            Some(&counters),
                            bound.prefix.encryption.as_ref(),
                            pin,
                        ) => r,
                    }
                }
            };
            // Dropping the stream closes the process's stdin: end of input.
            drop(dst);
            let res = res
                .map(|_| info_of(&rec))
                .map_err(|e| WitError::Io(format!("location.get-into {key}: {e}")));
            scope.audit(
                "transfer.get",
                &key,
                &rec.stored_key,
                started,
                &res,
                counters.transfer.load(Ordering::Relaxed),
            );
            res
        };
        Ok(Ok(self.spawn_transfer(bytes, cancel, fut)?))
    }

    async fn put_bytes(
        &mut self,
        h: Resource<Store>,
        key: String,
        data: Vec<u8>,
        opts: PutOptions,
    ) -> HostResult<ObjectInfo> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let checked = self.writable(&name, &bound, &key).and_then(|_| {
            if data.len() as u64 > self.scope.limits.captured_output {
                Err(WitError::Limit(format!("put-bytes of {} bytes: the cap is {} (spec.limits.capturedOutput); use put with a stream", data.len(), self.scope.limits.captured_output)))
            } else {
                Ok(())
            }
        });
        if let Err(e) = checked {
            self.scope.audit(
                "location.put-bytes",
                &key,
                "",
                started,
                &Err::<(), _>(e.clone()),
                0,
            );
            return Ok(Err(e));
        }
        let level = bound
            .zstd_level
            .filter(|_| opts.compression == Compression::Zstd);
        let src: DynInputStream = Box::new(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(data));
        let counters = Counters {
            transfer: Arc::new(AtomicU64::new(0)),
            action: self.scope.progress.bytes_counter(),
        };
        // On the action's tracker, like a `put`: if this call is dropped mid-way (a timeout, an
        // interrupt), the guard cancels the upload, which aborts cleanly before its task ends.
        let cancel = CancellationToken::new();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let upload = {
            let key = key.clone();
            async move { pipeline::upload(src, &bound.prefix, &key, level, &counters, &cancel).await }
        };
        let res = match self.scope.transfers.spawn(upload).await {
            Ok(r) => r.map_err(|e| WitError::Io(format!("location.put-bytes {key}: {e}"))),
            Err(e) => Err(WitError::Internal(format!("location.put-bytes {key}: {e}"))),
        };
        self.scope.audit(
            "location.put-bytes",
            &key,
            "",
            started,
            &res,
            res.as_ref().map_or(0, |r| r.size),
        );
        Ok(res.map(|rec| {
            self.scope.records.lock().unwrap().objects.push(rec.clone());
            info_of(&rec)
        }))
    }

    async fn get_bytes(
        &mut self,
        h: Resource<Store>,
        key: String,
        max_bytes: u64,
    ) -> HostResult<Vec<u8>> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let rec = self.readable(&name, &bound, &key);
        let res = match rec {
            Err(e) => Err(e),
            Ok(rec) => {
                let cap = max_bytes.min(self.scope.limits.captured_output);
                let mut buf = Vec::new();
                let r = match bound.prefix.path(&rec.stored_key) {
                    Err(e) => Err(e),
                    Ok(path) => {
                        let pinned = bound.verified_version(&rec.stored_key);
                        let pin = pipeline::Pin::from(pinned.as_ref());
                        pipeline::download(
                            bound.prefix.store.as_ref(),
                            &path,
                            &rec,
                            Sink::Buffer(&mut buf, cap),
                            None,
                            bound.prefix.encryption.as_ref(),
                            pin,
                        )
                        .await
                    }
                };
                r.map(|_| buf)
                    .map_err(|e| WitError::Io(format!("location.get-bytes {key}: {e}")))
            }
        };
        self.scope.audit(
            "location.get-bytes",
            &key,
            "",
            started,
            &res,
            res.as_ref().map_or(0, |b| b.len() as u64),
        );
        Ok(res)
    }

    async fn head(&mut self, h: Resource<Store>, key: String) -> HostResult<Option<ObjectInfo>> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let res = self
            .may(&name, &bound, LocationAccess::Read)
            .and_then(|_| self.key_ok(&key))
            .map(|_| known_object(self.scope, &bound, &key).map(|r| info_of(&r)));
        self.scope
            .audit("location.head", &key, "", started, &res, 0);
        Ok(res)
    }

    async fn list_keys(
        &mut self,
        h: Resource<Store>,
        prefix: String,
    ) -> HostResult<Vec<ObjectInfo>> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let res = match self.may(&name, &bound, LocationAccess::Read) {
            Err(e) => Err(e),
            Ok(()) => {
                let root = object_store::path::Path::from(bound.prefix.root.as_str());
                let mut out = Vec::new();
                let mut listing = bound.prefix.store.list(Some(&root));
                let mut failed = None;
                while let Some(item) = listing.next().await {
                    match item {
                        Err(e) => {
                            failed = Some(WitError::Io(format!("location.list-keys: {e}")));
                            break;
                        }
                        Ok(meta) => {
                            let full = meta.location.as_ref();
                            let rel = full
                                .strip_prefix(bound.prefix.root.as_str())
                                .unwrap_or(full)
                                .trim_start_matches('/');
                            let key = logical_key(rel);
                            let zstd = rel.ends_with(".zst") || rel.ends_with(".zst.age");
                            let plain = rel == key;
                            if !key.starts_with(prefix.as_str()) || key == MANIFEST_NAME {
                                continue;
                            }
                            out.push(match known_object(self.scope, &bound, &key) {
                                Some(r) => info_of(&r),
                                None => ObjectInfo {
                                    key,
                                    // Only a plain object's size is known without reading it.
                                    size: if plain { meta.size } else { 0 },
                                    stored_size: meta.size,
                                    sha256: String::new(),
                                    compression: if zstd {
                                        Compression::Zstd
                                    } else {
                                        Compression::None
                                    },
                                    metadata: vec![],
                                },
                            });
                        }
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            }
        };
        self.scope
            .audit("location.list-keys", &prefix, "", started, &res, 0);
        Ok(res)
    }

    async fn delete(&mut self, h: Resource<Store>, key: String) -> HostResult<()> {
        let started = Instant::now();
        let (name, bound) = self.bound(&h)?;
        let res = match self
            .may(&name, &bound, LocationAccess::Delete)
            .and_then(|_| self.key_ok(&key))
        {
            Err(e) => Err(e),
            Ok(()) => {
                let mut deleted = false;
                let mut failed = None;
                for stored in stored_variants(&key) {
                    let Ok(path) = bound.prefix.path(&stored) else {
                        continue;
                    };
                    match bound.prefix.store.delete(&path).await {
                        Ok(()) => deleted = true,
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            failed = Some(WitError::Io(format!("location.delete {key}: {e}")))
                        }
                    }
                }
                match (failed, deleted) {
                    (Some(e), _) => Err(e),
                    (None, true) => Ok(()),
                    (None, false) => Err(WitError::NotFound(format!("object {key:?}"))),
                }
            }
        };
        self.scope
            .audit("location.delete", &key, "", started, &res, 0);
        Ok(res)
    }

    async fn drop(&mut self, h: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(retype::<_, StoreHandle>(&h))?;
        Ok(())
    }
}

impl HostTransfer for View<'_> {
    async fn bytes(&mut self, h: Resource<Transfer>) -> wasmtime::Result<u64> {
        Ok(self
            .table
            .get(&retype::<_, TransferHandle>(&h))?
            .bytes
            .load(Ordering::Relaxed))
    }

    async fn wait(&mut self, h: Resource<Transfer>) -> HostResult<ObjectInfo> {
        let t = self.table.get_mut(&retype::<_, TransferHandle>(&h))?;
        if let Some(task) = t.task.take() {
            let res = match task.await {
                Ok(r) => r,
                Err(e) => Err(WitError::Internal(format!("transfer task failed: {e}"))),
            };
            t.result = Some(res);
        }
        Ok(t.result
            .clone()
            .unwrap_or_else(|| Err(WitError::Internal("transfer has no result".into()))))
    }

    async fn drop(&mut self, h: Resource<Transfer>) -> wasmtime::Result<()> {
        self.table.delete(retype::<_, TransferHandle>(&h))?;
        Ok(())
    }
}
