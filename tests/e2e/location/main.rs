//! End-to-end: locations against real servers (moto and s3s-fs for S3, Azurite
//! for Azure Blob, fake-gcs-server for GCS), age
//! encryption, Object Lock, `coffer verify`, `coffer profile validate`, `coffer location`,
//! and the faults a remote location has: a missing bucket, bad credentials, a server that
//! dies in the middle of an upload, a flipped byte, a wrong age identity.

mod azure;
mod common;
mod gcs;
mod moto;
mod s3s;
