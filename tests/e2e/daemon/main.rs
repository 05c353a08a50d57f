//! `coffer daemon` against the Kubernetes API simulator (tests/src/kube_sim): a StatefulSet
//! whose pod exec reaches a real local PostgreSQL, protected by annotation and by a
//! BlueprintBinding; backups and restores through ActionSets and the CLI; cancellation,
//! deadlines, a daemon killed mid-action, and two replicas with one Lease.

mod attacks;
mod env;
mod lifecycle;
mod protect;
mod volumes;
