//! Pre-signed multipart uploads: how a process that holds no credentials (a mover pod
//! beside the workload) writes one object. The host creates the upload, signs each part's
//! URL as the mover asks for it (one key, one upload, one part, a few minutes), completes
//! it with the parts' ETags, or aborts it. A URL lets its holder write that part of that
//! upload and nothing else: no read, no other key, no listing.

use object_store::MultipartId;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use std::time::Duration;

/// How long a part's URL is valid: long enough for one part on a slow link, short enough
/// that a leaked URL is soon useless.
pub const PART_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// A store that can hand out pre-signed part uploads. Paths are relative to the Profile
/// (its `prefix` is added here), as [`super::Prefix::path`] makes them.
#[async_trait::async_trait]
pub trait PartSigner: Send + Sync {
    /// Start an upload of `path`; its id.
    async fn create(&self, path: &Path) -> Result<String, String>;
    /// A URL to `PUT` part `part` (from 1) of upload `id` to.
    async fn part_url(&self, path: &Path, id: &str, part: usize) -> Result<String, String>;
    /// Complete upload `id` with its parts' ETags, in order.
    async fn complete(&self, path: &Path, id: &str, etags: Vec<String>) -> Result<(), String>;
    /// Abort upload `id`: its parts are removed.
    async fn abort(&self, path: &Path, id: &str) -> Result<(), String>;
    /// The CA certificates (PEM) a client putting parts must trust: the Profile's
    /// `spec.caFile`, when the store's certificate comes from a private CA.
    fn ca_pem(&self) -> Option<String> {
        None
    }
}

/// S3 (AWS or compatible), signed with the Profile's own credentials (SigV4 query
/// signing: `partNumber` and `uploadId` are part of the signature).
pub struct S3Parts {
    pub s3: AmazonS3,
    /// The Profile's `prefix` inside the bucket, with a trailing `/` (or empty).
    pub bucket_prefix: String,
    /// The Profile's CA certificates (PEM), if it names any.
    pub ca_pem: Option<String>,
}

impl S3Parts {
    fn full(&self, path: &Path) -> Result<Path, String> {
        Path::parse(format!("{}{path}", self.bucket_prefix)).map_err(|e| e.to_string())
    }
}

fn text(what: &str, e: object_store::Error) -> String {
    format!("{what}: {}", super::store_error(&e))
}

#[async_trait::async_trait]
impl PartSigner for S3Parts {
    fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    async fn create(&self, path: &Path) -> Result<String, String> {
        self.s3
            .create_multipart(&self.full(path)?)
            .await
            .map_err(|e| text("starting the upload", e))
    }

    async fn part_url(&self, path: &Path, id: &str, part: usize) -> Result<String, String> {
        let options = SignedUrlOptions::default().with_query([
            ("partNumber", part.to_string()),
            ("uploadId", id.to_string()),
        ]);
        self.s3
            .signed_url_opts(http::Method::PUT, &self.full(path)?, PART_URL_TTL, &options)
            .await
            .map(|u| u.to_string())
            .map_err(|e| text("signing a part's URL", e))
    }

    async fn complete(&self, path: &Path, id: &str, etags: Vec<String>) -> Result<(), String> {
        let parts = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.s3
            .complete_multipart(&self.full(path)?, &MultipartId::from(id), parts)
            .await
            .map(|_| ())
            .map_err(|e| text("completing the upload", e))
    }

    async fn abort(&self, path: &Path, id: &str) -> Result<(), String> {
        self.s3
            .abort_multipart(&self.full(path)?, &MultipartId::from(id))
            .await
            .map_err(|e| text("aborting the upload", e))
    }
}
