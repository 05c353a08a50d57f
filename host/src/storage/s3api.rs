//! The few S3 calls object_store does not make: is Object Lock enabled on the bucket, which
//! multipart uploads are still open under a prefix, and aborting one. Signed with
//! object_store's own SigV4 signer and credential chain, so they authenticate exactly like
//! the data path.

use object_store::aws::{AmazonS3, AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpRequest, HttpRequestBody};
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone)]
pub struct S3Api {
    credentials: AwsCredentialProvider,
    /// `https://host[:port]` or `https://bucket.s3.region.amazonaws.com`.
    base: String,
    bucket: String,
    region: String,
    path_style: bool,
    http: reqwest::Client,
}

/// An open multipart upload.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsResult {
    #[serde(default)]
    upload: Vec<OpenUpload>,
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockConfig {
    #[serde(default)]
    object_lock_enabled: Option<String>,
}

impl S3Api {
    pub fn new(
        s3: &AmazonS3,
        endpoint: Option<String>,
        bucket: String,
        region: String,
        path_style: bool,
        ca_pem: Option<&[u8]>,
    ) -> S3Api {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        // The Profile's private CA (checked when the Profile was opened).
        for c in ca_pem
            .map(|pem| reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default())
            .unwrap_or_default()
        {
            http = http.add_root_certificate(c);
        }
        let base = match (endpoint, path_style) {
            (Some(ep), true) => format!("{}/{bucket}", ep.trim_end_matches('/')),
            (Some(ep), false) => {
                let (scheme, host) = ep.split_once("://").unwrap_or(("https", &ep));
                format!("{scheme}://{bucket}.{}", host.trim_end_matches('/'))
            }
            (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
            (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        S3Api {
            credentials: s3.credentials().clone(),
            base,
            bucket,
            region,
            path_style,
            http: http.build().expect("a default HTTP client"),
        }
    }

    async fn call(&self, method: &str, path_and_query: &str) -> Result<String, String> {
        self.call_with(method, path_and_query, Vec::new()).await
    }

    async fn call_with(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<String, String> {
        use base64::Engine;
        use md5::Digest;
        let url = format!("{}/{path_and_query}", self.base);
        let mut builder = http::Request::builder().method(method).uri(&url);
        if !body.is_empty() {
            // Retention and similar configuration calls require Content-MD5.
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
            builder = builder.header("content-md5", md5);
        }
        let mut req: HttpRequest = builder
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let cred = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| format!("S3 credentials: {e}"))?;
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(|e| format!("signing {method} {url}: {e}"))?;
        let mut r = self.http.request(req.method().clone(), &url).body(body);
        for (k, v) in req.headers() {
            r = r.header(k, v);
        }
        let resp = r.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        if !status.is_success() {
            let code = xml_field(&body, "Code").unwrap_or_default();
            return Err(format!("{method} {url}: {status} {code}"));
        }
        Ok(body)
    }

    /// Whether the bucket has Object Lock enabled. A server without Object Lock support
    /// (it answers NotImplemented) counts as "no".
    pub async fn object_lock_enabled(&self) -> Result<bool, String> {
        match self.call("GET", "?object-lock").await {
            Ok(body) => {
                let cfg: LockConfig = quick_xml::de::from_str(&body)
                    .map_err(|e| format!("reading the object lock configuration: {e}"))?;
                Ok(cfg.object_lock_enabled.as_deref() == Some("Enabled"))
            }
            Err(e)
                if e.contains("ObjectLockConfigurationNotFound")
                    || e.contains("NotImplemented")
                    || e.contains("501") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Multipart uploads still open under `prefix` (a key prefix in the bucket).
    pub async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, String> {
        let mut out = Vec::new();
        let mut markers = String::new();
        loop {
            let body = self
                .call(
                    "GET",
                    &format!("?uploads&prefix={}{markers}", encode(prefix)),
                )
                .await?;
            let page: ListUploadsResult = quick_xml::de::from_str(&body)
                .map_err(|e| format!("reading the list of multipart uploads: {e}"))?;
            out.extend(page.upload);
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (Some(true), Some(k), Some(u)) => {
                    markers = format!("&key-marker={}&upload-id-marker={}", encode(&k), encode(&u))
                }
                _ => return Ok(out),
            }
        }
    }

    pub async fn abort_upload(&self, u: &OpenUpload) -> Result<(), String> {
        match self
            .call(
                "DELETE",
                &format!("{}?uploadId={}", encode_key(&u.key), encode(&u.upload_id)),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.contains("NoSuchUpload") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Object Lock retention on one object: `mode` GOVERNANCE or COMPLIANCE until `until`
    /// (RFC 3339).
    pub async fn put_retention(&self, key: &str, mode: &str, until: &str) -> Result<(), String> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>"
        );
        self.call_with(
            "PUT",
            &format!("{}?retention", encode_key(key)),
            body.into_bytes(),
        )
        .await
        .map(|_| ())
    }

    pub fn describe(&self) -> String {
        format!(
            "bucket {} ({} addressing, region {})",
            self.bucket,
            if self.path_style {
                "path-style"
            } else {
                "virtual-hosted"
            },
            self.region
        )
    }
}

/// The text of the first `<name>` element (error codes).
fn xml_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}

/// Percent-encoding for a query value (RFC 3986 unreserved characters kept).
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

/// Percent-encoding for a key in a path (`/` kept).
fn encode_key(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}
