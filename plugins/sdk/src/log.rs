//! Structured logs and progress through the host (`tracing` on the host side).

use crate::runtime::{self, Level};

fn emit(level: Level, msg: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    runtime::log(level, msg, &fields);
}

/// A debug line, with `key=value` fields (the host's COFFER_LOG=debug shows it).
pub fn debug(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Debug, msg, fields)
}
/// An info line, with `key=value` fields; kept on the ActionSet (`coffer describe
/// actionset`). Secret values are redacted by the host.
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Info, msg, fields)
}
/// A warning, with `key=value` fields.
pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Warn, msg, fields)
}
/// An error line, with `key=value` fields (return an `Error` to fail the action).
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Error, msg, fields)
}

/// Report progress of a step (`total` when known).
pub fn progress(step: &str, done: u64, total: Option<u64>) {
    runtime::progress(step, done, total)
}
