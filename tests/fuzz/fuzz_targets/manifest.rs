//! Plugin manifests (the custom section a plugin ships) and exec patterns: never panic, and
//! matching stays fast whatever the pattern.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = coffer_manifest::Manifest::from_json(data) {
        // A manifest that parses must survive its own round trip.
        let again = serde_json::to_vec(&m).unwrap();
        assert_eq!(coffer_manifest::Manifest::from_json(&again).unwrap(), m);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((pattern, argv)) = text.split_once('\n')
    {
        let argv: Vec<String> = argv.split(' ').map(String::from).collect();
        let _ = coffer_manifest::argv_matches(pattern, &argv);
    }
});
