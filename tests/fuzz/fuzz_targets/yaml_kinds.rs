//! The YAML a user applies (Blueprint, Profile, Workload): errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = coffer::model::parse_documents("fuzz", text);
    }
});
