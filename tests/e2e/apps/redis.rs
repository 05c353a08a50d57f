//! redis RDB backups against Redis 7.

use super::*;

fn redis_fill(r: &Redis) {
    let script = "for i=1,5000 do redis.call('SET','k'..i, string.rep('v', i % 50)..i) end \
        for i=1,300 do redis.call('HSET','h'..i,'f','v'..i,'n',i) redis.call('RPUSH','l'..(i % 10), i) \
        redis.call('SADD','s', i) redis.call('ZADD','z', i, 'm'..i) end \
        redis.call('SET','bin', '\\0\\1\\2\\255') redis.call('PEXPIRE','k1', 86400000) return 1";
    r.cli(&["EVAL", script, "0"]);
}

fn redis_digest(r: &Redis) -> (String, String) {
    (r.cli(&["DEBUG", "DIGEST"]), r.cli(&["DBSIZE"]))
}

/// A Workload YAML with a `data` volume at `dir`.
fn with_data_volume(workload_yaml: String, dir: &Path) -> String {
    format!("{workload_yaml}  volumes: {{data: {}}}\n", dir.display())
}

#[test]
fn redis_rdb_backup_restore_and_failures() {
    let pw = format!("redis-{}", random_hex(6));
    let mut r = Redis::start(Some(&pw));
    redis_fill(&r);
    let before = redis_digest(&r);
    assert_eq!(before.1.trim(), "5313");
    let work = tempfile::tempdir().unwrap();
    let pwf = password_file(work.path(), &pw);
    let c = cli();
    // The Workload pins the server the password may go to; the restore's target is its
    // `data` volume.
    let port = r.port.to_string();
    let env = [("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", port.as_str())];
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_path_buf();
    let cache = |pwf: &Path, name: &str| {
        with_data_volume(workload(name, "redis", &env, Some(pwf), "{}"), &dir)
    };
    assert!(c.apply(&cache(&pwf, "cache")).ok);
    let rp = restore_point_of(&c.run(&["backup", "cache", "-o", "json"]));
    assert!(coffer_tests::files_containing(c.home.path(), pw.as_bytes()).is_empty());

    // Place the RDB in the data volume and start a server on it: the same dataset.
    c.ok(&["restore", "cache", "--from", &rp]);
    let mut restored = Redis::start_in(target, Some(&pw));
    assert_eq!(redis_digest(&restored), before);
    assert!(
        restored.cli(&["PTTL", "k1"]).trim().parse::<i64>().unwrap() > 0,
        "the TTL was lost"
    );
    // An existing RDB is not replaced unless asked.
    fails_with(
        &c,
        &["restore", "cache", "--from", &rp],
        "set params.overwrite",
    );
    restored.stop();
    c.ok(&["restore", "cache", "--from", &rp, "-p", "overwrite=true"]);

    // Another workload's restore point is restored into this one only when asked for, and
    // then it is the same dataset.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = with_data_volume(
        workload("cache-copy", "redis", &env, Some(&pwf), "{}"),
        copy_dir.path(),
    );
    assert!(c.apply(&copy).ok);
    fails_with(
        &c,
        &["restore", "cache-copy", "--from", &rp],
        "Pass --allow-other-workload",
    );
    assert!(std::fs::read_dir(copy_dir.path()).unwrap().next().is_none());
    let crossed = c.ok(&[
        "restore",
        "cache-copy",
        "--from",
        &rp,
        "--allow-other-workload",
    ]);
    assert!(
        crossed
            .stderr
            .contains("restoring another workload's restore point"),
        "{}",
        crossed.stderr
    );
    let copied = Redis::start_in(copy_dir, Some(&pw));
    assert_eq!(redis_digest(&copied), before);
    drop(copied);

    // Bad params.
    fails_with(&c, &["backup", "cache", "-p", "port=0"], "params.port");
    // A port other than the pinned one.
    fails_with(&c, &["backup", "cache", "-p", "port=1"], "pins REDIS_PORT");
    fails_with(
        &c,
        &["restore", "cache", "--from", &rp, "-p", "volume=elsewhere"],
        "no volume \"elsewhere\"",
    );
    fails_with(
        &c,
        &["restore", "cache", "--from", &rp, "-p", "dbFilename=../x"],
        "params.dbFilename",
    );
    let relative =
        workload("cache-rel", "redis", &env, Some(&pwf), "{}") + "  volumes: {data: rel/dir}\n";
    let r2 = c.apply(&relative);
    assert!(
        !r2.ok && r2.stderr.contains("must be an absolute path"),
        "{}",
        r2.stderr
    );
    // Bad credentials.
    let wrong = password_file(work.path(), "wrong");
    assert!(c.apply(&cache(&wrong, "cache-badpw")).ok);
    fails_with(&c, &["backup", "cache-badpw"], "WRONGPASS");
    // A tool missing from PATH.
    let nopath = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("PATH", "/nonexistent"),
    ];
    assert!(
        c.apply(&workload(
            "cache-nopath",
            "redis",
            &nopath,
            Some(&pwf),
            "{}"
        ))
        .ok
    );
    fails_with(
        &c,
        &["backup", "cache-nopath"],
        "`redis-cli` was not found on the PATH",
    );
    // The server down.
    r.stop();
    fails_with(&c, &["backup", "cache"], "Connection refused");
}
