//! Plugin admission (reading a component's manifest section and imports without running it):
//! any bytes give an answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = coffer::plugin::PluginBytes::new("fuzz".into(), data.to_vec());
    let _ = coffer::plugin::inspect(&p);
});
