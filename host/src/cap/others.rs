//! Capabilities declared in the ABI whose backends come with the kubernetes issue (snapshot,
//! signed-http): in local
//! mode each call is grant-checked, audited, and answered `unavailable`.

use super::HostResult;
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::coffer::blueprint::{signed_http, snapshot};
use std::time::Instant;

fn unavailable<T>(what: &str) -> Result<T, WitError> {
    Err(WitError::Unavailable(format!(
        "{what} is not available in local mode; it needs the kubernetes backend"
    )))
}

impl HostState {
    fn not_here<T>(&self, cap: &str, target: &str, check: Result<(), WitError>) -> HostResult<T> {
        let started = Instant::now();
        let res = check.and_then(|_| unavailable(cap));
        self.ctx.audit(cap, target, "", started, &res, 0);
        Ok(res)
    }
}

impl snapshot::Host for HostState {
    async fn create(
        &mut self,
        source: snapshot::VolumeRef,
        _class: Option<String>,
        _labels: Vec<(String, String)>,
    ) -> HostResult<snapshot::SnapshotInfo> {
        let c = self.ctx.check_snapshot();
        self.not_here("snapshot.create", &source.name, c)
    }
    async fn wait_ready(
        &mut self,
        snap: snapshot::SnapshotRef,
        _timeout_ms: u64,
    ) -> HostResult<snapshot::SnapshotInfo> {
        let c = self.ctx.check_snapshot();
        self.not_here("snapshot.wait-ready", &snap.name, c)
    }
    async fn restore(
        &mut self,
        snap: snapshot::SnapshotRef,
        _target: snapshot::VolumeRef,
        _class: Option<String>,
    ) -> HostResult<()> {
        let c = self.ctx.check_snapshot();
        self.not_here("snapshot.restore", &snap.name, c)
    }
    async fn delete(&mut self, snap: snapshot::SnapshotRef) -> HostResult<()> {
        let c = self.ctx.check_snapshot();
        self.not_here("snapshot.delete", &snap.name, c)
    }
}

impl signed_http::Host for HostState {
    async fn send(
        &mut self,
        profile: String,
        req: signed_http::Request,
    ) -> HostResult<signed_http::Response> {
        let c = self.ctx.check_signed_http(&profile);
        let target = format!("{} {}", req.method, req.url);
        self.not_here("signed-http.send", &target, c)
    }
}
