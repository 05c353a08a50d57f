//! coffer: a blueprint runtime for application-level data protection.
//!
//! App-specific backup / restore / delete logic ships as sandboxed WebAssembly components
//! (plugins). This crate is the host: it loads plugins ([`plugin`]) and runs them in a wasm
//! sandbox ([`engine`]), lends them capabilities ([`cap`]) through the plugin ABI ([`wit`])
//! under the grants of a Blueprint, runs actions and records them ([`action`], [`catalog`]),
//! and offers all of it as the `coffer` CLI ([`cli`]).

pub mod action;
pub mod binding;
pub mod cap;
pub mod catalog;
pub mod cli;
pub mod credentials;
pub mod engine;
pub mod harness;
pub mod home;
pub mod k8s;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod plugin;
pub mod policy;
pub mod redact;
pub mod scheduler;
pub mod storage;
pub mod ui;
pub mod wit;

/// Plugins and blueprints shipped inside the binary.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

    /// Blueprints shipped inside the binary (blueprints/*.yaml).
    pub const BUILTIN_BLUEPRINTS: &[(&str, &str)] = &[
        (
            "postgres-logical",
            include_str!("../../blueprints/postgres-logical.yaml"),
        ),
        (
            "postgres-bitnami",
            include_str!("../../blueprints/postgres-bitnami.yaml"),
        ),
        (
            "mysql-logical",
            include_str!("../../blueprints/mysql-logical.yaml"),
        ),
        (
            "mysql-consistent",
            include_str!("../../blueprints/mysql-consistent.yaml"),
        ),
        ("fsfreeze", include_str!("../../blueprints/fsfreeze.yaml")),
        (
            "postgres-consistent",
            include_str!("../../blueprints/postgres-consistent.yaml"),
        ),
        ("volumes", include_str!("../../blueprints/volumes.yaml")),
        ("rds", include_str!("../../blueprints/rds.yaml")),
        (
            "pgbackrest",
            include_str!("../../blueprints/pgbackrest.yaml"),
        ),
        ("etcd", include_str!("../../blueprints/etcd.yaml")),
        ("redis", include_str!("../../blueprints/redis.yaml")),
        ("kafka", include_str!("../../blueprints/kafka.yaml")),
        ("medusa", include_str!("../../blueprints/medusa.yaml")),
    ];

    pub fn plugin(name: &str) -> Option<&'static [u8]> {
        BUILTIN_PLUGINS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
    }
}
