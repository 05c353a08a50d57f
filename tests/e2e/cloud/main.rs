//! Cloud APIs through host-signed requests (issue 15): a plugin has requests signed with a
//! Signer it never sees the keys of, only within what its Blueprint grants.

use coffer_tests::cli::Cli;
use std::path::Path;

mod rds;
mod rds_dump;
mod signed_http;

fn cli() -> Cli {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-cache");
    Cli::new(env!("CARGO_BIN_EXE_coffer"), Some(&cache))
}
