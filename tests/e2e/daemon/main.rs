//! `coffer daemon` on a real control plane (tests/src/kube_real.rs: kube-apiserver with RBAC
//! and audit, the controller manager, kwok as the node): a StatefulSet whose pod exec reaches a
//! real local PostgreSQL, protected by annotation and by a BlueprintBinding; backups and
//! restores through ActionSets and the CLI; cancellation, deadlines, a daemon killed
//! mid-action, two replicas with one Lease; CRDs and RBAC as the server enforces them. The
//! daemon runs with the shipped ServiceAccount's token. What needs CSI snapshots, task pods'
//! volumes or a record of every request runs on the API simulator (tests/src/kube_sim):
//! `Env::start_sim`.

mod application;
mod attacks;
mod cluster;
mod env;
mod group_snapshots;
mod guards;
mod helm;
mod lifecycle;
mod medusa;
mod mover;
mod pgo;
mod policy;
mod protect;
mod rds;
mod signers;
mod ui_auth;
mod ui_cluster;
mod volumes;
