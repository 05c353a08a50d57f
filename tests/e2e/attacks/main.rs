//! What a hostile plugin (or a tenant of a namespace) tries, and what stops it: one module
//! per attack of the security review (docs/security.md has the table). Each test fails on a
//! host without the defence it names.

#[path = "../common/hostile.rs"]
mod common;

mod exec;
mod memory;
mod net;
mod records;
mod restore_points;
