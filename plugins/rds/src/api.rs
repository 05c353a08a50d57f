//! The RDS Query API through the host's `signed-http`: form-encoded POSTs, XML answers,
//! retried with backoff when AWS throttles or fails on its side, and AWS's error codes
//! turned into errors that say what to do.

use coffer_plugin_sdk::{self as sdk, Error, RemoteError, log, signed_http};
use std::time::Duration;

/// The Signer the built-in Blueprint grants.
pub const SIGNER: &str = "aws";
const VERSION: &str = "2014-10-31";
const ATTEMPTS: u32 = 6;

pub struct Rds {
    url: String,
}

impl Rds {
    /// The API at `endpoint`, or AWS's own for `region`.
    pub fn new(region: &str, endpoint: Option<&str>) -> Rds {
        Rds {
            url: match endpoint {
                Some(e) => format!("{}/", e.trim_end_matches('/')),
                None => format!("https://rds.{region}.amazonaws.com/"),
            },
        }
    }

    /// The request that calls `action` with `params`.
    pub fn request<K: AsRef<str>>(
        &self,
        action: &str,
        params: &[(K, String)],
    ) -> signed_http::Request {
        let mut body = format!("Action={action}&Version={VERSION}");
        for (k, v) in params {
            body.push('&');
            body.push_str(&encode(k.as_ref()));
            body.push('=');
            body.push_str(&encode(v));
        }
        signed_http::Request {
            method: "POST".into(),
            url: self.url.clone(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: Some(body.into_bytes()),
        }
    }

    /// A guard that calls `action` with `params` when the action ends, however it ends
    /// (unless fired or disarmed first): registered before the step it undoes.
    pub fn guard<K: AsRef<str>>(
        &self,
        name: &str,
        action: &str,
        params: &[(K, String)],
    ) -> Result<sdk::runtime::Guard, Error> {
        sdk::runtime::add_request_guard(name, SIGNER, &self.request(action, params))
    }

    /// Call `action` with `params`; the answer's XML text.
    pub fn call<K: AsRef<str>>(
        &self,
        action: &str,
        params: &[(K, String)],
    ) -> Result<String, Error> {
        let req = self.request(action, params);
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let resp = signed_http::send(SIGNER, &req)?;
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            if resp.status < 300 {
                return Ok(text);
            }
            let (code, message) = error_of(&text);
            let retry = resp.status >= 500
                || code.contains("Throttl")
                || code == "RequestLimitExceeded"
                || code == "TooManyRequestsException";
            if retry && attempt < ATTEMPTS {
                log::warn(
                    "RDS asked to retry",
                    &[
                        ("action", action),
                        ("code", &code),
                        ("status", &resp.status.to_string()),
                    ],
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(20));
                continue;
            }
            return Err(classify(action, resp.status, &code, &message));
        }
        unreachable!("the last attempt returns")
    }
}

/// An AWS error answer's code and message.
fn error_of(xml: &str) -> (String, String) {
    let doc = roxmltree::Document::parse(xml).ok();
    let find = |tag: &str| {
        doc.as_ref()
            .and_then(|d| text(d.root(), tag))
            .unwrap_or_default()
    };
    (find("Code"), find("Message"))
}

fn classify(action: &str, status: u16, code: &str, message: &str) -> Error {
    let what = format!("RDS {action}: {code}: {message}");
    match code {
        "DBInstanceNotFound"
        | "DBInstanceNotFoundFault"
        | "DBClusterNotFoundFault"
        | "DBSnapshotNotFound"
        | "DBSnapshotNotFoundFault"
        | "DBClusterSnapshotNotFoundFault" => Error::NotFound(what),
        "InvalidDBInstanceState"
        | "InvalidDBInstanceStateFault"
        | "InvalidDBClusterStateFault"
        | "InvalidDBSnapshotState"
        | "InvalidDBSnapshotStateFault" => Error::Conflict(format!(
            "{what}; wait until it is available (DescribeDBInstances) and run again"
        )),
        "SnapshotQuotaExceeded" | "SnapshotQuotaExceededFault" => Error::Limit(format!(
            "{what}; delete old restore points (coffer delete) or raise the account's snapshot quota"
        )),
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            Error::Denied(format!(
                "{what}; the Signer's IAM identity needs rds:{action} (docs/rds.md lists the policy)"
            ))
        }
        _ => Error::Remote(RemoteError {
            system: "rds".into(),
            code: Some(if code.is_empty() {
                status.to_string()
            } else {
                code.to_string()
            }),
            message: what,
            retryable: status >= 500,
        }),
    }
}

/// The text of the first element named `tag` under `node`.
pub fn text(node: roxmltree::Node, tag: &str) -> Option<String> {
    node.descendants()
        .find(|n| n.has_tag_name(tag))
        .and_then(|n| n.text())
        .map(str::to_string)
}

/// `xml` parsed, or an error saying RDS answered something else.
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, Error> {
    roxmltree::Document::parse(xml)
        .map_err(|e| sdk::internal(format!("RDS answered something that is not XML: {e}")))
}

/// Form encoding (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
