//! A capability declared in the ABI whose backend is not built yet (signed-http): each call
//! is grant-checked, audited, and answered `unavailable`.

use super::HostResult;
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::coffer::blueprint::signed_http;
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
