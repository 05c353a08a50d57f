//! The argument policy (host/src/cap/exec/policy): whatever argv a plugin sends, vetting
//! never panics, what it lets through is the plugin's argv with only the host's additions
//! (nothing of the plugin's dropped or reordered), and a file, shell or option-file option
//! in the first place (where no other option can take it as its value) is always refused.
#![no_main]

use coffer::cap::exec::policy::{Input, check_grant, vet};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const PROGRAMS: &[&str] = &[
    "psql", "pg_dump", "pg_dumpall", "pg_restore", "mariadb", "mariadb-dump", "redis-cli",
    "etcdctl", "redis-check-rdb", "cat", "/usr/bin/psql",
];

/// Options no allowed command line may hold, as whole arguments or `--opt=` prefixes.
const NEVER: &[&str] = &[
    "--file", "--output", "--log-file", "--tee", "--result-file", "--plugin-dir",
    "--default-auth", "--pager", "--eval", "--functions-rdb", "--defaults-file",
    "--defaults-extra-file", "--wal-dir", "--debug", "--cluster",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let program = PROGRAMS[sel as usize % PROGRAMS.len()];
    let mut argv = vec![program.to_string()];
    argv.extend(text.split('\0').map(String::from));
    let env: BTreeMap<String, String> = if sel & 0x80 != 0 {
        [("PGHOST".to_string(), "db".to_string()), ("MYSQL_HOST".into(), "db".into())].into()
    } else {
        BTreeMap::new()
    };
    let input = Input {
        workload_env: &env,
        has_secret: sel & 0x40 != 0,
        scratch: Some("/tmp/coffer-scratch.fuzz"),
    };
    let result = vet(&argv, &input);
    if let Some(first) = argv.get(1)
        && program != "cat"
        && NEVER.iter().any(|n| first == n || first.starts_with(&format!("{n}=")))
    {
        assert!(result.is_err(), "{argv:?} was allowed");
    }
    if let Ok(v) = result {
        // The plugin's arguments all there, in order.
        let mut it = v.argv.iter();
        for a in &argv {
            assert!(it.any(|x| x == a), "{a:?} was dropped from {argv:?}");
        }
        if program.ends_with("psql") {
            assert!(v.stdin_preamble.is_some());
        }
    }
    let _ = check_grant(text, sel & 1 == 1);
});
