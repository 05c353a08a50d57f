use super::SecretRef;
use serde::{Deserialize, Serialize};

/// A location: where artifacts are stored. Credentials are references (files or environment
/// variables of the coffer process), never inline, and never reach a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(rename = "type")]
    pub kind: ProfileType,
    /// For `file`: a directory (a local disk or an NFS mount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// For `s3` and `gcs`: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// For `azure`: the storage account and the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// A path inside the bucket or container under which everything is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// For `s3`: the region (default: AWS_REGION from the environment, else us-east-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An S3-compatible endpoint (MinIO, Ceph, ...) or an emulator's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// For `s3`: path-style addressing (`endpoint/bucket/key`), which most S3-compatible
    /// servers need. Default: true when `endpoint` is set, false for AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Where credentials come from. Absent: the environment's standard chain (for `s3`:
    /// AWS_* variables, web identity, instance metadata; for `gcs`: application default
    /// credentials; for `azure`: AZURE_* variables, managed identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Client-side encryption. Required for remote types: age recipients, or `none` on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// Object Lock retention for every object a backup writes (`s3` only; the bucket must
    /// have Object Lock enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLockSpec>,
    /// Retries of a failed request (remote types), with exponential backoff: how many
    /// (default 10) and for how long in all (default 3m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout: Option<String>,
    /// Compression of stored objects (default zstd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// zstd level (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
}

impl ProfileSpec {
    /// A `file` Profile on `path`, with defaults for everything else.
    pub fn file(path: std::path::PathBuf) -> ProfileSpec {
        ProfileSpec {
            kind: ProfileType::File,
            path: Some(path),
            bucket: None,
            account: None,
            container: None,
            prefix: None,
            region: None,
            endpoint: None,
            path_style: None,
            credentials: None,
            encryption: None,
            object_lock: None,
            retries: None,
            retry_timeout: None,
            compression: None,
            compression_level: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProfileType {
    File,
    S3,
    Gcs,
    Azure,
}

impl ProfileType {
    /// Whether data leaves this machine (and so must be encrypted unless said otherwise).
    pub fn is_remote(self) -> bool {
        !matches!(self, ProfileType::File)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileType::File => "file",
            ProfileType::S3 => "s3",
            ProfileType::Gcs => "gcs",
            ProfileType::Azure => "azure",
        }
    }
}

/// Secret references for a location's credentials; which ones apply depends on the type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// `s3`: access key id and secret access key (and a session token for temporary ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretRef>,
    /// `gcs`: a service account key (the JSON document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key: Option<SecretRef>,
    /// `azure`: the storage account's access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretRef>,
}

/// `encryption: none`, or age recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EncryptionSpec {
    /// Only `none` is accepted: an explicit choice to store plaintext.
    Keyword(String),
    Age(AgeSpec),
}

/// A string or an object: a CRD cannot say that structurally, so the schema keeps the
/// value as given and coffer checks it when the Profile is used.
impl schemars::JsonSchema for EncryptionSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EncryptionSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`none`, or {recipients: [age1...], identity: {file | env}}",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgeSpec {
    /// X25519 recipients (`age1...`): anyone of them can decrypt. Public, so inline.
    pub recipients: Vec<String>,
    /// The identity (`AGE-SECRET-KEY-1...`, or an age identity file) that restore and
    /// verify decrypt with. Not needed to back up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectLockSpec {
    /// `governance` (privileged users may shorten it) or `compliance` (nobody can).
    pub mode: ObjectLockMode,
    /// Retention from the moment of the backup, in days.
    pub days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockMode {
    Governance,
    Compliance,
}

impl ObjectLockMode {
    pub fn header_value(self) -> &'static str {
        match self {
            ObjectLockMode::Governance => "GOVERNANCE",
            ObjectLockMode::Compliance => "COMPLIANCE",
        }
    }
}
