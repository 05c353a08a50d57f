//! A Signer made ready for an action: its credentials read (by reference, or from the
//! standard AWS chain of the coffer process: the environment, the shared credentials file,
//! a web identity token) and held in memory only, and SigV4 signing with them
//! (`aws-sigv4`).

use crate::credentials::Credentials as HostCredentials;
use crate::model::{Signer, SignerType};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod web_identity;
use web_identity::WebIdentity;

/// One Signer, ready to sign.
pub struct ReadySigner {
    pub name: String,
    pub region: String,
    /// Where requests go instead of AWS (scheme, host, port).
    pub endpoint: Option<url::Url>,
    keys: Source,
}

/// Keys. Never printed (no Debug).
struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// Where the keys come from: given, or STS for a web identity (refreshed before they
/// expire).
enum Source {
    Static(Arc<Keys>),
    WebIdentity(Box<WebIdentity>),
}

impl ReadySigner {
    /// A signer with made-up keys (tests of what is allowed).
    #[cfg(test)]
    pub fn for_test(name: &str, region: &str, endpoint: Option<&str>) -> ReadySigner {
        ReadySigner {
            name: name.into(),
            region: region.into(),
            endpoint: endpoint.map(|e| url::Url::parse(e).unwrap()),
            keys: Source::Static(Arc::new(Keys {
                access_key_id: "AKID".into(),
                secret_access_key: "secret".into(),
                session_token: None,
            })),
        }
    }

    /// [`ReadySigner::for_test`] with these secret key and session token.
    #[cfg(test)]
    pub fn for_test_with_token(
        name: &str,
        region: &str,
        endpoint: &str,
        secret: &str,
        token: &str,
    ) -> ReadySigner {
        let mut s = ReadySigner::for_test(name, region, Some(endpoint));
        s.keys = Source::Static(Arc::new(Keys {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: secret.into(),
            session_token: Some(token.into()),
        }));
        s
    }

    /// What must never come back to the plugin in an answer: the secret values, and the
    /// keys a web identity got from STS (fetched after the action's redactor was made).
    pub fn live_secrets(&self) -> Vec<String> {
        let mut all = self.secret_values();
        if let Ok(k) = self.current() {
            all.push(k.secret_access_key.clone());
            all.extend(k.session_token.clone());
        }
        all
    }

    /// The secret values, for the action's redactor (a web identity's token; the keys STS
    /// gives for it are never logged either).
    pub fn secret_values(&self) -> Vec<String> {
        match &self.keys {
            Source::Static(k) => [Some(&k.secret_access_key), k.session_token.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            Source::WebIdentity(w) => w.secret_values(),
        }
    }

    /// Keys good for the next few minutes: a web identity's are fetched from STS (again
    /// when they are about to expire).
    pub async fn refresh(&self, client: &reqwest::Client) -> Result<(), String> {
        match &self.keys {
            Source::Static(_) => Ok(()),
            Source::WebIdentity(w) => w
                .refresh(client)
                .await
                .map_err(|e| format!("Signer {}: {e}", self.name)),
        }
    }

    fn current(&self) -> Result<Arc<Keys>, String> {
        match &self.keys {
            Source::Static(k) => Ok(k.clone()),
            Source::WebIdentity(w) => w.current(),
        }
    }

    /// The headers that sign `method url` with `headers` and `body` for `service` at
    /// `time`: `authorization`, `x-amz-date`, and `x-amz-security-token` /
    /// `x-amz-content-sha256` where they apply.
    pub fn sign(
        &self,
        service: &str,
        time: SystemTime,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        // S3 wants the payload's hash as a header; the other services do not.
        self.sign_as(service, service == "s3", time, method, url, headers, body)
    }

    /// [`ReadySigner::sign`], with the payload's hash sent as `x-amz-content-sha256` or not.
    #[allow(clippy::too_many_arguments)]
    fn sign_as(
        &self,
        service: &str,
        payload_header: bool,
        time: SystemTime,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let keys = self.current()?;
        let identity = Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            keys.session_token.clone(),
            None,
            "coffer-signer",
        )
        .into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            // S3 signs the path as sent.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        if payload_header {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("signing: {e}"))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("signing: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

/// Check a Signer and read its credentials; what is wrong names the field and what to do.
pub fn check(s: &Signer, creds: &HostCredentials) -> Result<ReadySigner, String> {
    let name = s.name();
    let SignerType::AwsSigv4 = s.spec.kind;
    if s.spec.region.is_empty()
        || !s
            .spec
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "Signer {name}: spec.region {:?} is not a region like us-east-1",
            s.spec.region
        ));
    }
    let endpoint = match &s.spec.endpoint {
        None => None,
        Some(e) => {
            let u = url::Url::parse(e)
                .map_err(|err| format!("Signer {name}: spec.endpoint {e:?}: {err}"))?;
            if !matches!(u.scheme(), "https" | "http")
                || u.host_str().is_none()
                || !u.username().is_empty()
                || u.password().is_some()
            {
                return Err(format!(
                    "Signer {name}: spec.endpoint {e:?} must be an http(s) URL with a host and no user"
                ));
            }
            Some(u)
        }
    };
    let keys = match &s.spec.credentials {
        Some(c) => {
            let read = |field: &str, r: &crate::model::SecretRef| {
                creds.read(&format!("Signer {name}: spec.credentials.{field}"), r)
            };
            Source::Static(Arc::new(Keys {
                access_key_id: read("accessKeyId", &c.access_key_id)?,
                secret_access_key: read("secretAccessKey", &c.secret_access_key)?,
                session_token: c
                    .session_token
                    .as_ref()
                    .map(|t| read("sessionToken", t))
                    .transpose()?,
            }))
        }
        None => chain(name, &s.spec.region)
            .map_err(|e| format!("Signer {name}: no spec.credentials, and {e}"))?,
    };
    Ok(ReadySigner {
        name: name.to_string(),
        region: s.spec.region.clone(),
        endpoint,
        keys,
    })
}

/// The standard AWS chain of this process: the environment, then the shared credentials
/// file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `AWS_PROFILE` or
/// `default`), then a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`:
/// EKS's IAM roles for service accounts) exchanged with STS.
fn chain(name: &str, region: &str) -> Result<Source, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Source::Static(Arc::new(Keys {
            access_key_id: id,
            secret_access_key: secret,
            session_token: var("AWS_SESSION_TOKEN"),
        })));
    }
    let file = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let text = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok());
    let Some(text) = text else {
        if let (Some(token_file), Some(role)) =
            (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN"))
        {
            return WebIdentity::new(name, region, token_file.into(), role)
                .map(|w| Source::WebIdentity(Box::new(w)));
        }
        return Err(
            "the AWS chain found no keys: not AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             not a shared credentials file (~/.aws/credentials), not AWS_WEB_IDENTITY_TOKEN_FILE \
             with AWS_ROLE_ARN; give the Signer spec.credentials, or set one of those"
                .to_string(),
        );
    };
    let values = ini_section(&text, &profile);
    let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Source::Static(Arc::new(Keys {
            access_key_id: id,
            secret_access_key: secret,
            session_token: get("aws_session_token"),
        }))),
        _ => Err(format!(
            "profile [{profile}] of {} has no aws_access_key_id and aws_secret_access_key",
            file.map(|f| f.display().to_string()).unwrap_or_default()
        )),
    }
}

/// `key = value` pairs of section `[name]` of an INI text.
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case of `sigv4-test-suite/`: the request signed at the context's time with its
    /// keys gives exactly the signed request's Authorization (and session token).
    #[test]
    fn signatures_match_aws_test_suite() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/cap/signed_http/sigv4-test-suite");
        let mut cases = 0;
        for case in std::fs::read_dir(&dir).unwrap().flatten() {
            if !case.path().is_dir() {
                continue;
            }
            let read = |f: &str| std::fs::read_to_string(case.path().join(f)).unwrap();
            let ctx: serde_json::Value = serde_json::from_str(&read("context.json")).unwrap();
            let request = read("request.txt");
            let (head, body) = request.split_once("\n\n").unwrap_or((&request, ""));
            let mut lines = head.lines();
            let first: Vec<&str> = lines.next().unwrap().split(' ').collect();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (k, v) = l.split_once(':').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let host = &headers.iter().find(|(k, _)| k == "Host").unwrap().1;
            let url = format!("https://{host}{}", first[1]);
            let c = &ctx["credentials"];
            let signer = ReadySigner {
                name: "test".into(),
                region: ctx["region"].as_str().unwrap().into(),
                endpoint: None,
                keys: Source::Static(Arc::new(Keys {
                    access_key_id: c["access_key_id"].as_str().unwrap().into(),
                    secret_access_key: c["secret_access_key"].as_str().unwrap().into(),
                    session_token: c["token"].as_str().map(String::from),
                })),
            };
            let time = time::OffsetDateTime::parse(
                ctx["timestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let signed = signer
                .sign_as(
                    ctx["service"].as_str().unwrap(),
                    ctx["sign_body"] == true,
                    time.into(),
                    first[0],
                    &url,
                    &headers,
                    body.as_bytes(),
                )
                .unwrap();
            let expected = read("header-signed-request.txt");
            for name in ["authorization", "x-amz-security-token"] {
                let want = expected.lines().find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_string())
                });
                let got = signed
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone());
                assert_eq!(got, want, "{}: {name}", case.file_name().to_string_lossy());
            }
            cases += 1;
        }
        assert!(cases >= 8, "only {cases} cases found in {}", dir.display());
    }

    #[test]
    fn shared_credentials_sections_are_read_by_name() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[prod]\n# c\naws_access_key_id = C\naws_secret_access_key = D\naws_session_token = E\n";
        assert_eq!(
            ini_section(text, "prod"),
            [
                ("aws_access_key_id".to_string(), "C".to_string()),
                ("aws_secret_access_key".into(), "D".into()),
                ("aws_session_token".into(), "E".into())
            ]
        );
        assert_eq!(ini_section(text, "default").len(), 2);
        assert!(ini_section(text, "none").is_empty());
    }
}
