//! The `signed-http` interface: cloud API calls the host signs for the plugin, so it never
//! holds a key. The plugin builds a request and names a Signer; the host checks it against
//! the Blueprint's grant (signer, service, hosts, methods), signs it with the Signer's
//! credentials (SigV4), sends it and returns the answer. The audit trail records method,
//! host, path, the API action and the status — never bodies or credentials.

mod grant;
mod scrub;
pub mod signer;

pub use grant::{SignedHttpGrant, check_grants};
use signer::ReadySigner;

use super::{Backends, CapView, Capability, Grants, HasCap, HostResult};
use crate::wit::WitError;
use crate::wit::abi::signed_http;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Linker;

/// The largest request body a plugin may send, and response body it may get: API calls,
/// not bulk data.
const MAX_REQUEST: usize = 1 << 20;
const MAX_RESPONSE: usize = 8 << 20;
const TIMEOUT: Duration = Duration::from_secs(120);
/// Headers the host sets (signature, host, framing); a plugin's are refused.
const HOST_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// The Signers an action's Blueprint grants, ready, and the client that sends for them.
pub struct Signers {
    signers: BTreeMap<String, ReadySigner>,
    client: reqwest::Client,
}

impl Signers {
    pub fn new(signers: Vec<ReadySigner>) -> Result<Signers, String> {
        let client = reqwest::Client::builder()
            // A redirect would carry a signed request somewhere the grant did not name.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("an HTTP client for signed-http: {e}"))?;
        Ok(Signers {
            signers: signers.into_iter().map(|s| (s.name.clone(), s)).collect(),
            client,
        })
    }

    /// Every secret value they hold, for the action's redactor.
    pub fn secret_values(&self) -> Vec<String> {
        self.signers
            .values()
            .flat_map(ReadySigner::secret_values)
            .collect()
    }
}

pub struct SignedHttp {
    grant: SignedHttpGrant,
    signers: Option<Arc<Signers>>,
}

impl Capability for SignedHttp {
    fn build(grants: &Grants, backends: &Backends) -> SignedHttp {
        SignedHttp {
            grant: SignedHttpGrant::new(grants),
            signers: backends.get::<Arc<Signers>>(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()> {
        signed_http::add_to_linker::<T, HasCap<SignedHttp>>(linker, get)
    }
}

/// What the audit trail says of a request: `METHOD host/path`, and the API action (the
/// `Action` of a query or form body, or the `X-Amz-Target` header).
fn described(req: &signed_http::Request) -> (String, String) {
    let url = url::Url::parse(&req.url).ok();
    let target = match &url {
        Some(u) => format!(
            "{} {}{}",
            req.method,
            u.host_str().unwrap_or_default(),
            u.path()
        ),
        None => format!("{} (not a URL)", req.method),
    };
    let from_pairs = |s: &[u8]| {
        url::form_urlencoded::parse(s)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    };
    let action = url
        .as_ref()
        .and_then(|u| u.query().and_then(|q| from_pairs(q.as_bytes())))
        .or_else(|| req.body.as_deref().and_then(from_pairs))
        .or_else(|| {
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_default();
    (target, action)
}

/// A request that passed every check: where it goes and the service it is signed for.
struct Checked {
    signer: String,
    service: String,
    method: String,
    url: url::Url,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The largest body a request guard may keep on the ActionSet.
const MAX_GUARD_BODY: usize = 64 << 10;

impl SignedHttp {
    fn signers(&self) -> Result<&Arc<Signers>, WitError> {
        self.signers.as_ref().ok_or_else(|| {
            WitError::Unavailable(
                "signed-http: no Signer is ready for this action (the Blueprint grants none the plugin declares)".into(),
            )
        })
    }

    /// Check `req` for Signer `name`: granted (the grant gives the service), an allowed
    /// URL and method, no header the host sets, not too big.
    fn check_request(&self, name: &str, req: &signed_http::Request) -> Result<Checked, WitError> {
        self.grant.check(name)?;
        let signer = self.signers()?.get(name)?;
        let url = checked_url(signer, &req.url)?;
        let method = checked_method(&req.method)?;
        let service = self.grant.service(signer, &method, &url)?;
        let body = req.body.clone().unwrap_or_default();
        if body.len() > MAX_REQUEST {
            return Err(WitError::Limit(format!(
                "signed-http: a request body of {} bytes; at most {MAX_REQUEST}",
                body.len()
            )));
        }
        Ok(Checked {
            signer: name.to_string(),
            service,
            method,
            url,
            headers: checked_headers(&req.headers)?,
            body,
        })
    }

    async fn send(
        &self,
        name: &str,
        req: &signed_http::Request,
    ) -> Result<signed_http::Response, WitError> {
        let checked = self.check_request(name, req)?;
        self.signers()?.dispatch(&checked).await
    }

    /// What a request guard records (`runtime.add-request-guard`): `req` checked as a send
    /// is, with a text body of at most 64 KiB.
    pub fn guard_request(
        &self,
        name: &str,
        req: &signed_http::Request,
    ) -> Result<crate::model::GuardRequest, WitError> {
        let c = self.check_request(name, req)?;
        if c.body.len() > MAX_GUARD_BODY {
            return Err(WitError::Limit(format!(
                "a request guard's body of {} bytes; at most {MAX_GUARD_BODY}",
                c.body.len()
            )));
        }
        let body = String::from_utf8(c.body).map_err(|_| {
            WitError::InvalidArgument("a request guard's body must be text (UTF-8)".into())
        })?;
        Ok(crate::model::GuardRequest {
            signer: c.signer,
            service: c.service,
            method: c.method,
            url: c.url.to_string(),
            headers: c.headers.into_iter().collect(),
            body,
        })
    }

    /// The Signers it sends with: what a request guard keeps to send later.
    pub fn ready_signers(&self) -> Option<Arc<Signers>> {
        self.signers.clone()
    }
}

/// `raw` as a URL a signed request may go to: https, or plain http only to the Signer's own
/// http endpoint; no user, no fragment.
fn checked_url(signer: &ReadySigner, raw: &str) -> Result<url::Url, WitError> {
    let url =
        url::Url::parse(raw).map_err(|e| WitError::InvalidArgument(format!("url {raw:?}: {e}")))?;
    let plain_ok = signer.endpoint.as_ref().is_some_and(|e| {
        e.scheme() == "http"
            && e.host_str() == url.host_str()
            && e.port_or_known_default() == url.port_or_known_default()
    });
    if !(url.scheme() == "https" || url.scheme() == "http" && plain_ok)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
        || url.host_str().is_none()
    {
        return Err(WitError::Denied(format!(
            "signed-http: {raw} must be an https URL (plain http only to the Signer's own http endpoint), with no user and no fragment"
        )));
    }
    Ok(url)
}

fn checked_method(raw: &str) -> Result<String, WitError> {
    let method = raw.to_ascii_uppercase();
    if !["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str()) {
        return Err(WitError::InvalidArgument(format!(
            "method {raw:?} is not one of GET, HEAD, POST, PUT, DELETE, PATCH"
        )));
    }
    Ok(method)
}

/// The plugin's headers, lower-cased; one the host sets, or not valid HTTP, is refused.
fn checked_headers(given: &[(String, String)]) -> Result<Vec<(String, String)>, WitError> {
    let mut headers = Vec::new();
    for (k, v) in given {
        let lower = k.to_ascii_lowercase();
        if HOST_HEADERS.contains(&lower.as_str()) {
            return Err(WitError::InvalidArgument(format!(
                "header {k}: the host sets it"
            )));
        }
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            return Err(WitError::InvalidArgument(format!(
                "header {k:?}: not a valid HTTP header"
            )));
        }
        headers.push((lower, v.clone()));
    }
    Ok(headers)
}

impl Signers {
    fn get(&self, name: &str) -> Result<&ReadySigner, WitError> {
        self.signers.get(name).ok_or_else(|| {
            WitError::NotFound(format!(
                "signed-http: Signer {name} was not made ready for this action"
            ))
        })
    }

    /// Sign a checked request with its Signer's credentials, send it, read the answer.
    async fn dispatch(&self, c: &Checked) -> Result<signed_http::Response, WitError> {
        let signer = self.get(&c.signer)?;
        signer
            .refresh(&self.client)
            .await
            .map_err(WitError::Unavailable)?;
        let (method, url) = (&c.method, &c.url);
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => unreachable!("checked_url"),
        };
        let mut to_sign = c.headers.clone();
        to_sign.push(("host".into(), host));
        let signed = signer
            .sign(
                &c.service,
                SystemTime::now(),
                method,
                url.as_str(),
                &to_sign,
                &c.body,
            )
            .map_err(WitError::Internal)?;
        let mut out = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|e| WitError::InvalidArgument(e.to_string()))?,
            url.clone(),
        );
        for (k, v) in c.headers.iter().chain(&signed) {
            out = out.header(k, v);
        }
        let resp = out.body(c.body.clone()).send().await.map_err(|e| {
            WitError::Io(format!(
                "signed-http: {method} {}: {}",
                url.host_str().unwrap_or_default(),
                chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        let secrets = signer.live_secrets();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.to_string(), scrub::scrub_text(v, &secrets))
            })
            .collect();
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| WitError::Io(format!("signed-http: reading the answer: {e}")))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(WitError::Limit(format!(
                    "signed-http: an answer over {MAX_RESPONSE} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(signed_http::Response {
            status,
            headers,
            body: scrub::scrub(body, &secrets),
        })
    }

    /// Send a request guard's request (checked when it was registered; the URL again
    /// against the Signer as it is now), signed with the Signer's credentials of now.
    /// Done on a 2xx answer or a 404 (what it deletes is gone); throttling, 5xx answers and
    /// failed connections are tried again until `timeout`. The status it ended with.
    pub async fn send_guard(
        &self,
        g: &crate::model::GuardRequest,
        timeout: Duration,
    ) -> Result<u16, String> {
        let text = |e: WitError| crate::cap::error_text(&e);
        let signer = self.get(&g.signer).map_err(text)?;
        let checked = Checked {
            signer: g.signer.clone(),
            service: g.service.clone(),
            method: checked_method(&g.method).map_err(text)?,
            url: checked_url(signer, &g.url).map_err(text)?,
            headers: g.headers.clone().into_iter().collect(),
            body: g.body.clone().into_bytes(),
        };
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(500);
        loop {
            let why = match self.dispatch(&checked).await {
                Ok(r) if (200..300).contains(&r.status) || r.status == 404 => return Ok(r.status),
                Ok(r) if r.status == 429 || r.status >= 500 || is_throttled(&r.body) => {
                    format!("answer {}", r.status)
                }
                Ok(r) => {
                    return Err(format!(
                        "answer {}: {}",
                        r.status,
                        crate::redact::clip(String::from_utf8_lossy(&r.body).trim(), 512)
                    ));
                }
                Err(e @ WitError::Io(_)) => text(e),
                Err(e) => return Err(text(e)),
            };
            if Instant::now() + pause > deadline {
                return Err(format!("still failing after {}s: {why}", timeout.as_secs()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

/// AWS says "slow down" with a 400 and a Throttling code in the body.
fn is_throttled(body: &[u8]) -> bool {
    let b = String::from_utf8_lossy(body);
    b.contains("Throttling") || b.contains("RequestLimitExceeded")
}

/// An error with its causes (reqwest names the cause, a refused connection, only there).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// The Signers both declared by the plugin and granted by the Blueprint, read with their
/// credentials (`find` looks a Signer up by name); None when there are none.
pub fn ready(
    grants: &Grants,
    find: impl Fn(&str) -> anyhow::Result<Option<crate::model::Signer>>,
    creds: &crate::credentials::Credentials,
) -> anyhow::Result<Option<Signers>> {
    let names: Vec<&str> = grants
        .granted
        .signed_http
        .iter()
        .map(|g| g.signer())
        .filter(|n| grants.declared.signed_http.iter().any(|d| d.signer() == *n))
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let why = format!("which Blueprint {} grants", grants.blueprint);
    named(&names, &why, find, creds).map(Some)
}

/// The Signers `names` ready (`find` looks one up by name); `why` says why each is needed,
/// for the error when one does not exist.
pub fn named(
    names: &[&str],
    why: &str,
    find: impl Fn(&str) -> anyhow::Result<Option<crate::model::Signer>>,
    creds: &crate::credentials::Credentials,
) -> anyhow::Result<Signers> {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    let mut ready = Vec::new();
    for n in names {
        let s = find(n)?.ok_or_else(|| {
            anyhow::anyhow!(
                "Signer {n}, {why}, does not exist: apply one (kind: Signer, docs/signed-http.md)"
            )
        })?;
        ready.push(signer::check(&s, creds).map_err(|e| anyhow::anyhow!(e))?);
    }
    Signers::new(ready).map_err(|e| anyhow::anyhow!(e))
}

impl signed_http::Host for CapView<'_, SignedHttp> {
    async fn send(
        &mut self,
        profile: String,
        req: signed_http::Request,
    ) -> HostResult<signed_http::Response> {
        let started = Instant::now();
        let res = self.cap.send(&profile, &req).await;
        let (target, action) = described(&req);
        let args = match &res {
            Ok(r) => format!("signer={profile} action={action} status={}", r.status),
            Err(_) => format!("signer={profile} action={action}"),
        };
        let bytes = res.as_ref().map_or(0, |r| r.body.len() as u64);
        self.scope
            .audit("signed-http.send", &target, &args, started, &res, bytes);
        Ok(res)
    }
}
