//! Opening the object store behind a Profile: a directory, S3 (AWS or compatible), GCS or
//! Azure Blob, all through object_store. Credentials are read here, from the references
//! in the Profile, and stay in the host.

use super::presign::{PartSigner, S3Parts};
use super::s3api::S3Api;
use crate::credentials::Credentials;
use crate::model::{Profile, ProfileType, SecretRef, parse_duration};
use anyhow::{Context, Result, anyhow, bail};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default number of retries of a failed request, and the time they may take in all.
const DEFAULT_RETRIES: usize = 10;
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(180);

/// An opened Profile.
pub struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// For file profiles: the directory (leftovers of interrupted uploads live there).
    pub local_root: Option<PathBuf>,
    /// For s3 profiles: the calls object_store does not make (object lock, multipart listing).
    pub s3: Option<S3Api>,
    /// Pre-signed part uploads (s3 profiles), for movers that hold no credentials.
    pub parts: Option<Arc<dyn PartSigner>>,
}

pub fn open(p: &Profile, credentials: &Credentials) -> Result<Opened> {
    let name = p.name();
    let spec = &p.spec;
    let need = |field: &str, v: &Option<String>| -> Result<String> {
        match v {
            Some(s) if !s.is_empty() => Ok(s.clone()),
            _ => bail!(
                "Profile {name}: spec.{field} is required for type {}",
                spec.kind.as_str()
            ),
        }
    };
    let secret = |field: &str, r: &Option<SecretRef>| -> Result<Option<String>> {
        r.as_ref()
            .map(|r| credentials.read(&format!("Profile {name}: spec.credentials.{field}"), r))
            .transpose()
            .map_err(|e| anyhow!(e))
    };
    let only = |allowed: &[&str]| -> Result<()> {
        let present = [
            ("path", spec.path.is_some()),
            ("bucket", spec.bucket.is_some()),
            ("account", spec.account.is_some()),
            ("container", spec.container.is_some()),
            ("region", spec.region.is_some()),
            ("endpoint", spec.endpoint.is_some()),
            ("pathStyle", spec.path_style.is_some()),
            ("caFile", spec.ca_file.is_some()),
            ("objectLock", spec.object_lock.is_some()),
        ];
        for (field, set) in present {
            if set && !allowed.contains(&field) {
                bail!(
                    "Profile {name}: spec.{field} does not apply to type {}",
                    spec.kind.as_str()
                );
            }
        }
        Ok(())
    };
    if spec.object_lock.as_ref().is_some_and(|l| l.days == 0) {
        bail!("Profile {name}: spec.objectLock.days must be at least 1");
    }
    let creds = spec.credentials.clone().unwrap_or_default();
    let bucket_prefix = spec
        .prefix
        .as_deref()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}/"))
        .unwrap_or_default();
    let mut parts: Option<Arc<dyn PartSigner>> = None;
    let (store, local_root, s3): (Arc<dyn ObjectStore>, _, _) = match spec.kind {
        ProfileType::File => {
            only(&["path"])?;
            if spec.credentials.is_some() {
                bail!("Profile {name}: spec.credentials does not apply to type file");
            }
            let dir = spec
                .path
                .clone()
                .with_context(|| format!("Profile {name}: spec.path is required for type file"))?;
            if !dir.is_absolute() {
                bail!(
                    "Profile {name}: spec.path {} must be absolute",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("Profile {name}: creating {}", dir.display()))?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("Profile {name}: opening {}", dir.display()))?;
            (Arc::new(fs), Some(dir), None)
        }
        ProfileType::S3 => {
            only(&[
                "bucket",
                "region",
                "endpoint",
                "pathStyle",
                "objectLock",
                "caFile",
            ])?;
            let bucket = need("bucket", &spec.bucket)?;
            let mut b = AmazonS3Builder::from_env().with_bucket_name(&bucket);
            let region = s3_region(spec);
            b = b.with_region(&region);
            if let Some(ep) = &spec.endpoint {
                b = b.with_endpoint(ep);
            }
            let path_style = spec.path_style.unwrap_or(spec.endpoint.is_some());
            b = b.with_virtual_hosted_style_request(!path_style);
            match (
                secret("accessKeyId", &creds.access_key_id)?,
                secret("secretAccessKey", &creds.secret_access_key)?,
            ) {
                (Some(id), Some(key)) => {
                    b = b.with_access_key_id(id).with_secret_access_key(key);
                    if let Some(t) = secret("sessionToken", &creds.session_token)? {
                        b = b.with_token(t);
                    }
                }
                (None, None) => {}
                _ => bail!(
                    "Profile {name}: spec.credentials needs both accessKeyId and secretAccessKey"
                ),
            }
            if creds.service_account_key.is_some() || creds.access_key.is_some() {
                bail!(
                    "Profile {name}: spec.credentials for s3 takes accessKeyId, secretAccessKey and sessionToken"
                );
            }
            let options = client_options(p, spec.endpoint.as_deref())?;
            let s3 = b
                .with_retry(retry(p)?)
                .with_client_options(options)
                .build()
                .with_context(|| format!("Profile {name}: configuring S3"))?;
            let ca = ca_pem(p)?;
            let api = S3Api::new(
                &s3,
                spec.endpoint.clone(),
                bucket,
                region,
                path_style,
                ca.as_deref(),
            );
            parts = Some(Arc::new(S3Parts {
                s3: s3.clone(),
                bucket_prefix,
                ca_pem: ca.map(|pem| String::from_utf8_lossy(&pem).into_owned()),
            }));
            (Arc::new(s3) as Arc<dyn ObjectStore>, None, Some(api))
        }
        ProfileType::Gcs => {
            only(&["bucket", "endpoint", "caFile"])?;
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(need("bucket", &spec.bucket)?);
            // The key file may name the API's base URL itself (`gcs_base_url`, as emulators'
            // keys do); spec.endpoint wins over it.
            let mut base = None;
            if let Some(key) = secret("serviceAccountKey", &creds.service_account_key)? {
                let parsed: serde_json::Value = serde_json::from_str(&key).map_err(|e| {
                    anyhow!(
                        "Profile {name}: spec.credentials.serviceAccountKey is not a service-account key (JSON): {e}; download one with `gcloud iam service-accounts keys create`"
                    )
                })?;
                base = parsed["gcs_base_url"].as_str().map(String::from);
                b = b.with_service_account_key(key);
            }
            if let Some(ep) = &spec.endpoint {
                b = b.with_base_url(ep.trim_end_matches('/'));
                base = Some(ep.clone());
            }
            if let Some(url) = &base {
                check_url(name, url)?;
            }
            let gcs = b
                .with_retry(retry(p)?)
                .with_client_options(client_options(p, base.as_deref())?)
                .build()
                .map_err(|e| {
                    anyhow!(
                        "Profile {name}: configuring GCS{}: {e}",
                        base.as_deref()
                            .map(|u| format!(" at {u}"))
                            .unwrap_or_default()
                    )
                })?;
            (Arc::new(gcs), None, None)
        }
        ProfileType::Azure => {
            only(&["account", "container", "endpoint", "caFile"])?;
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_account(need("account", &spec.account)?)
                .with_container_name(need("container", &spec.container)?);
            if let Some(key) = secret("accessKey", &creds.access_key)? {
                b = b.with_access_key(key);
            }
            if let Some(ep) = &spec.endpoint {
                b = b.with_endpoint(ep.clone());
            }
            let az = b
                .with_retry(retry(p)?)
                .with_client_options(client_options(p, spec.endpoint.as_deref())?)
                .build()
                .with_context(|| format!("Profile {name}: configuring Azure"))?;
            (Arc::new(az), None, None)
        }
    };
    let (store, local_root) = match spec.prefix.as_deref().map(|s| s.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => (
            Arc::new(PrefixStore::new(store, prefix)) as Arc<dyn ObjectStore>,
            local_root.map(|d: PathBuf| d.join(prefix)),
        ),
        _ => (store, local_root),
    };
    Ok(Opened {
        store,
        local_root,
        s3,
        parts,
    })
}

/// An s3 Profile's region: its own, else AWS_REGION or AWS_DEFAULT_REGION from the
/// environment, else us-east-1.
pub fn s3_region(spec: &crate::model::ProfileSpec) -> String {
    spec.region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into())
}

/// An endpoint is an http(s) URL (plain http for emulators and private networks only when
/// it says `http://`).
fn check_url(profile: &str, url: &str) -> Result<()> {
    let ok = url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    if !ok {
        bail!(
            "Profile {profile}: endpoint {url:?} is not an http(s) URL; write it like https://storage.googleapis.com, or http://127.0.0.1:4443 for an emulator"
        );
    }
    Ok(())
}

/// Client options; plain http only when the endpoint says so; the Profile's CA
/// certificates trusted besides the system's. (Set here, not on the builders:
/// `with_client_options` replaces what their `with_allow_http` set.)
fn client_options(p: &Profile, endpoint: Option<&str>) -> Result<ClientOptions> {
    let mut options = ClientOptions::new()
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300));
    if let Some(pem) = ca_pem(p)? {
        for c in object_store::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow!("Profile {}: spec.caFile: {e}", p.name()))?
        {
            options = options.with_root_certificate(c);
        }
    }
    Ok(options)
}

/// The Profile's CA certificates (`spec.caFile`), checked to be PEM certificates.
pub fn ca_pem(p: &Profile) -> Result<Option<Vec<u8>>> {
    let Some(path) = &p.spec.ca_file else {
        return Ok(None);
    };
    let name = p.name();
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "Profile {name}: reading spec.caFile {}; give a PEM file of CA certificates coffer can read",
            path.display()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
    if certs.is_empty() {
        bail!(
            "Profile {name}: spec.caFile {} holds no PEM certificates; give the CA's certificate in PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(Some(pem))
}

fn retry(p: &Profile) -> Result<RetryConfig> {
    let timeout = match &p.spec.retry_timeout {
        Some(t) => parse_duration(t)
            .map_err(|e| anyhow!("Profile {}: spec.retryTimeout: {e}", p.name()))?,
        None => DEFAULT_RETRY_TIMEOUT,
    };
    Ok(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.,
        },
        max_retries: p.spec.retries.unwrap_or(DEFAULT_RETRIES),
        retry_timeout: timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, ProfileSpec};

    fn profile(yaml: &str) -> Profile {
        let spec: ProfileSpec = serde_yaml_ng::from_str(yaml).unwrap();
        Profile::new(Kind::Profile, "p", spec)
    }

    fn err(yaml: &str) -> String {
        match open(&profile(yaml), &Credentials::local()) {
            Ok(_) => panic!("{yaml} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn each_type_says_what_it_needs() {
        assert!(err("{type: s3}").contains("spec.bucket is required for type s3"));
        assert!(err("{type: azure, account: a}").contains("spec.container is required"));
        assert!(
            err("{type: file, path: /tmp/x, bucket: b}")
                .contains("spec.bucket does not apply to type file")
        );
        assert!(
            err("{type: gcs, bucket: b, endpoint: 'localhost:4443'}")
                .contains("is not an http(s) URL; write it like https://")
        );
        assert!(
            err("{type: gcs, bucket: b, region: r}")
                .contains("spec.region does not apply to type gcs")
        );
        assert!(err("{type: file, path: rel}").contains("must be absolute"));
        let e =
            err("{type: s3, bucket: b, credentials: {accessKeyId: {env: COFFER_TEST_UNSET_VAR}}}");
        assert!(
            e.contains("spec.credentials.accessKeyId") && e.contains("COFFER_TEST_UNSET_VAR"),
            "{e}"
        );
        assert!(
            err("{type: s3, bucket: b, caFile: /nonexistent/ca.pem}")
                .contains("reading spec.caFile /nonexistent/ca.pem")
        );
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), "not a certificate").unwrap();
        assert!(
            err(&format!(
                "{{type: s3, bucket: b, caFile: {}}}",
                junk.path().display()
            ))
            .contains("holds no PEM certificates")
        );
        assert!(
            err("{type: file, path: /tmp/x, caFile: /ca.pem}")
                .contains("spec.caFile does not apply to type file")
        );
        let e = err("{type: s3, bucket: b, retryTimeout: soon}");
        assert!(e.contains("spec.retryTimeout"), "{e}");
        assert!(
            open(
                &profile("{type: s3, bucket: b, endpoint: 'http://127.0.0.1:9'}"),
                &Credentials::local()
            )
            .is_ok()
        );
    }
}
