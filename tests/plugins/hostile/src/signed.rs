//! Mode `signed`: send each of `requests` through signed-http and report, per request,
//! `r<i>` = `STATUS BODY` (the body's first 300 characters) or `error: …`; the backup
//! stores one object and succeeds either way, so the test reads every answer. A request
//! with `guard: true` is registered as a request guard instead (`guarded`, or the error),
//! and left armed for the host to send as the action ends. With `then: hang` it then
//! sleeps `count` seconds (in the guest: no exec needed), for a test to kill its runner.

use crate::Params;
use coffer_plugin_sdk::{self as sdk, ActionOutput, Error, signed_http};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, sdk::JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignedRequest {
    signer: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    guard: bool,
}

pub(crate) fn send_all(p: &Params) -> Result<ActionOutput, Error> {
    let mut out = crate::ok_artifact()?;
    for (i, r) in p.requests.iter().enumerate() {
        let req = signed_http::Request {
            method: r.method.clone(),
            url: r.url.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body: r.body.as_ref().map(|b| b.as_bytes().to_vec()),
        };
        if r.guard {
            let answer = match sdk::runtime::add_request_guard("hostile", &r.signer, &req) {
                Ok(_armed) => "guarded".to_string(),
                Err(e) => format!("error: {}", sdk::error_text(&e)),
            };
            out.outputs.push((format!("r{i}"), answer));
            continue;
        }
        let answer = match signed_http::send(&r.signer, &req) {
            Ok(resp) => format!(
                "{} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
            Err(e) => format!("error: {}", sdk::error_text(&e)),
        };
        out.outputs.push((format!("r{i}"), answer));
    }
    if p.then == "hang" {
        std::thread::sleep(std::time::Duration::from_secs(p.count.max(1)));
    }
    Ok(out)
}
