//! The argument policy against the attacks it exists for, tool by tool.

use super::*;

fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn vet_with(a: &[&str], env: &[(&str, &str)], secret: bool) -> Result<Vetted, String> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vet(&argv(a), &Input::test(&env, secret))
}

fn refused(a: &[&str]) -> String {
    vet_with(a, &[], false).expect_err(&format!("{a:?} was allowed"))
}

#[test]
fn medusa_runs_this_nodes_commands_with_the_workloads_configuration() {
    let ini = [("MEDUSA_CONFIG_FILE", "/etc/cassandra/medusa.ini")];
    // The pinned configuration is passed before the command; another is refused.
    let v = vet_with(
        &[
            "medusa",
            "backup",
            "--backup-name",
            "rp-1",
            "--mode",
            "full",
        ],
        &ini,
        false,
    )
    .unwrap();
    assert_eq!(
        v.argv,
        argv(&[
            "medusa",
            "--config-file=/etc/cassandra/medusa.ini",
            "backup",
            "--backup-name",
            "rp-1",
            "--mode",
            "full"
        ])
    );
    assert!(
        vet_with(
            &[
                "medusa",
                "--config-file",
                "/etc/cassandra/medusa.ini",
                "verify",
                "--backup-name",
                "x"
            ],
            &ini,
            false
        )
        .is_ok()
    );
    for a in [
        &[
            "medusa",
            "--config-file",
            "/tmp/evil.ini",
            "verify",
            "--backup-name",
            "x",
        ][..],
        &["medusa", "--config-file=/proc/self/fd/0", "list-backups"],
    ] {
        let e = vet_with(a, &ini, false).expect_err(&format!("{a:?}"));
        assert!(e.contains("pins MEDUSA_CONFIG_FILE"), "{e}");
    }
    // Not pinned: medusa's own /etc/medusa/medusa.ini, never one the plugin names.
    assert_eq!(
        vet_with(&["medusa", "purge"], &[], false).unwrap().argv,
        argv(&["medusa", "purge"])
    );
    assert!(
        refused(&["medusa", "--config-file", "/tmp/x.ini", "purge"]).contains("MEDUSA_CONFIG_FILE")
    );
    for (a, why) in [
        (
            &[
                "medusa",
                "--fqdn",
                "10.0.0.9",
                "restore-node",
                "--backup-name",
                "b",
            ][..],
            "another node",
        ),
        (&["medusa", "--bucket-name", "theirs", "backup"], "storage"),
        (&["medusa", "--prefix=x", "backup"], "storage"),
        (
            &["medusa", "--ssh-key-file", "/root/.ssh/id_rsa", "backup"],
            "other nodes",
        ),
        (&["medusa", "backup-cluster"], "not allowed"),
        (
            &["medusa", "restore-cluster", "--backup-name", "b"],
            "not allowed",
        ),
        (
            &[
                "medusa",
                "download",
                "--backup-name",
                "b",
                "--download-destination",
                "/etc",
            ],
            "not one coffer knows",
        ),
        (
            &["medusa", "restore-node", "--backup-name", "b", "--remote"],
            "another node",
        ),
        (
            &[
                "medusa",
                "restore-node",
                "--backup-name",
                "b",
                "--seeds",
                "10.0.0.1",
            ],
            "other nodes",
        ),
        (
            &[
                "medusa",
                "restore-node",
                "--backup-name",
                "b",
                "--use-sstableloader",
            ],
            "whole cluster",
        ),
        (
            &[
                "medusa",
                "restore-node",
                "--backup-name",
                "b",
                "--temp-dir",
                "/var/lib/cassandra",
            ],
            "scratch",
        ),
        (
            &["medusa", "delete-backup", "--backup-name", "b", "-a"],
            "every node",
        ),
        (&["medusa", "backup", "--keep-snapshot"], "snapshot"),
        (
            &["medusa", "backup", "--backup-name", "../x"],
            "not a backup name",
        ),
        (
            &["medusa", "backup", "--mode", "incremental"],
            "full or differential",
        ),
        (
            &["medusa", "backup", "--backup-nam", "b"],
            "write options in full",
        ),
        (&["medusa", "verify", "b1"], "not allowed"),
    ] {
        let e = refused(a);
        assert!(e.contains(why), "{a:?}: {e}");
    }
    assert!(
        vet_with(
            &[
                "medusa",
                "restore-node",
                "--backup-name",
                "b",
                "--in-place",
                "--temp-dir",
                "/tmp/coffer-scratch.x",
                "--keyspace",
                "shop"
            ],
            &[],
            false
        )
        .is_ok()
    );
    assert!(
        vet_with(
            &["medusa", "-v", "delete-backup", "--backup-name", "b", "-c"],
            &[],
            false
        )
        .is_ok()
    );
}

#[test]
fn file_and_shell_options_are_refused_in_every_spelling() {
    for a in [
        &["psql", "-X", "-h", "/nonexistent", "-o", "|id > /tmp/x"][..],
        &["psql", "--output=|id"],
        &["psql", "-o|id"],
        &["psql", "-Xqo|id"],
        &["psql", "-c", "\\! id"],
        &["psql", "--command=\\copy t from program 'id'"],
        &["psql", "-L", "/tmp/log"],
        &["psql", "-f", "/etc/shadow"],
        &["psql", "--fil=/etc/shadow"],
        &["psql", "-v", "ECHO=all"],
        &["psql", "-a"],
        &["psql", "-P", "pager=always"],
        &["pg_dump", "-f", "/root/.bashrc", "shop"],
        &["pg_dump", "-fx"],
        &["pg_dump", "-Fd", "shop"],
        &["pg_dump", "--format=directory"],
        &["pg_dump", "--filter=/etc/shadow"],
        &["pg_dumpall", "--file=/tmp/x"],
        &["pg_restore", "/var/backups/other.dump"],
        &["pg_restore", "-L", "/etc/shadow"],
        &["pg_restore", "-d", "dbname=x sslkey=/root/key"],
        &["pg_dump", "--cluster", "15/evil:5432"],
        &["mariadb", "--no-defaults", "--tee=/tmp/x"],
        &["mariadb", "--no-defaults", "--plugin-dir=/tmp"],
        &["mariadb", "--no-defaults", "--default-auth=evil"],
        &["mariadb", "--no-defaults", "--pager=sh"],
        &["mariadb", "--defaults-extra-file=/tmp/my.cnf"],
        &["mariadb", "-e", "system id"],
        &["mariadb", "--no-defaults", "--defaults-file=/tmp/x"],
        &["mariadb", "--no-defaults", "--local-infile=1"],
        &[
            "mariadb-dump",
            "--no-defaults",
            "--result-file=/tmp/x",
            "db",
        ],
        &["mariadb-dump", "--no-defaults", "-r/tmp/x", "db"],
        &["mariadb-dump", "--no-defaults", "--tab=/tmp", "db"],
        &["redis-cli", "--rdb", "/root/.ssh/authorized_keys"],
        &["redis-cli", "--eval", "/etc/shadow"],
        &["redis-cli", "--functions-rdb", "/tmp/x"],
        &["redis-cli", "CONFIG", "SET", "dir", "/root/.ssh"],
        &["redis-cli", "--cluster", "backup", "x:1", "/tmp"],
        &["etcdctl", "snapshot", "save", "/etc/cron.d/x"],
        &["etcdctl", "snapshot", "save", "/tmp/coffer-scratch.x/../x"],
        &["etcdctl", "watch", "k", "--", "sh", "-c", "id"],
        &["etcdctl", "lock", "l", "id"],
        &["etcdctl", "--debug", "endpoint", "health"],
        &[
            "etcdctl",
            "snapshot",
            "restore",
            "/tmp/coffer-scratch.x/s.db",
            "--wal-dir=/x",
        ],
        &["redis-check-rdb", "/etc/shadow"],
    ] {
        let e = refused(a);
        assert!(!e.is_empty(), "{a:?}");
    }
}

#[test]
fn what_the_first_party_plugins_run_is_allowed() {
    for a in [
        &[
            "psql",
            "-X",
            "--no-password",
            "-A",
            "-t",
            "-q",
            "-0",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname=dbname='postgres'",
            "-c",
            "SELECT 1",
        ][..],
        &[
            "psql",
            "-X",
            "--no-password",
            "-q",
            "--dbname=dbname='o\\'brien'",
        ],
        &[
            "pg_dumpall",
            "--globals-only",
            "--no-password",
            "--dbname=dbname='postgres'",
            "--no-role-passwords",
        ],
        &[
            "pg_dump",
            "--format=custom",
            "--compress=0",
            "--no-password",
            "--dbname=dbname='shop'",
        ],
        &[
            "pg_restore",
            "--create",
            "--exit-on-error",
            "--no-password",
            "--dbname=dbname='postgres'",
        ],
        &[
            "mariadb-dump",
            "--no-defaults",
            "--single-transaction",
            "--routines",
            "--skip-dump-date",
            "--",
            "-odd name",
        ],
        &[
            "mariadb-dump",
            "--no-defaults",
            "--system=users",
            "--insert-ignore",
        ],
        &[
            "redis-cli",
            "--no-auth-warning",
            "-h",
            "127.0.0.1",
            "-p",
            "6379",
            "--rdb",
            "-",
        ],
        &["redis-cli", "PING"],
        &["redis-cli", "config", "get", "dir"],
        &[
            "etcdctl",
            "--dial-timeout=5s",
            "--command-timeout=5s",
            "endpoint",
            "health",
        ],
        &[
            "etcdctl",
            "snapshot",
            "save",
            "/tmp/coffer-scratch.x/snapshot.db",
        ],
        &[
            "etcdctl",
            "snapshot",
            "restore",
            "/tmp/coffer-scratch.x/snapshot.db",
            "--data-dir=/var/lib/etcd-new",
        ],
        &["redis-check-rdb", "/tmp/coffer-scratch.x/dump.rdb"],
        &["some-tool", "--anything", "/etc/shadow"],
    ] {
        vet_with(a, &[], false).unwrap_or_else(|e| panic!("{a:?}: {e}"));
    }
}

#[test]
fn servers_the_workload_pins_win() {
    // A process given a secret talks only to the pinned server.
    let pg = [("PGHOST", "127.0.0.1"), ("PGPORT", "5432")];
    assert!(vet_with(&["pg_dump", "-h", "evil.example", "shop"], &pg, true).is_err());
    assert!(vet_with(&["pg_dump", "-h", "127.0.0.1", "shop"], &pg, true).is_ok());
    assert!(vet_with(&["pg_dump", "--dbname=host=evil dbname=shop"], &pg, true).is_err());
    assert!(vet_with(&["pg_dump", "-p5433"], &pg, true).is_err());
    // A `*.` pin: one label under its suffix, nothing else.
    let wild = [("PGHOST", "*.abc123.eu-west-1.rds.amazonaws.com")];
    let wild: BTreeMap<String, String> = wild
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let input = Input::test(&wild, true);
    assert!(
        pin(
            "PGHOST",
            "shop-dump-1.abc123.eu-west-1.rds.amazonaws.com",
            &input
        )
        .is_ok()
    );
    for evil in [
        "evil.com",
        "a.b.abc123.eu-west-1.rds.amazonaws.com",
        "abc123.eu-west-1.rds.amazonaws.com",
        "x.abc123.eu-west-1.rds.amazonaws.com.evil.com",
        "x.evilabc123.eu-west-1.rds.amazonaws.com",
        "x y.abc123.eu-west-1.rds.amazonaws.com",
    ] {
        assert!(pin("PGHOST", evil, &input).is_err(), "{evil}");
    }
    assert!(!one_label_under("*.com", "evil.com"));
    assert!(!one_label_under("*.example.com", "evil.example.com"));
    // Unpinned: allowed without a secret, refused with one.
    assert!(vet_with(&["pg_dump", "-h", "db", "shop"], &[], false).is_ok());
    let e = vet_with(&["pg_dump", "-h", "db", "shop"], &[], true).unwrap_err();
    assert!(e.contains("set PGHOST in the Workload's env"), "{e}");
    // mariadb-dump ignores MYSQL_HOST: the host passes the pins as flags.
    let my = [("MYSQL_HOST", "127.0.0.1"), ("MYSQL_TCP_PORT", "3307")];
    let v = vet_with(&["mariadb-dump", "--no-defaults", "--", "shop"], &my, true).unwrap();
    assert_eq!(
        v.argv,
        argv(&[
            "mariadb-dump",
            "--no-defaults",
            "--host=127.0.0.1",
            "--port=3307",
            "--",
            "shop"
        ])
    );
    assert!(vet_with(&["mariadb-dump", "--no-defaults", "--host=evil"], &my, true).is_err());
    assert!(vet_with(&["mariadb-dump", "--no-defaults", "-hevil"], &my, true).is_err());
    let r = [("REDIS_HOST", "10.0.0.5")];
    let v = vet_with(&["redis-cli", "--rdb", "-"], &r, true).unwrap();
    assert_eq!(v.argv, argv(&["redis-cli", "-h", "10.0.0.5", "--rdb", "-"]));
    assert!(
        vet_with(
            &["etcdctl", "--endpoints=evil:2379", "endpoint", "health"],
            &[],
            true
        )
        .is_err()
    );
}

#[test]
fn the_host_makes_tools_safe() {
    let v = vet_with(&["psql", "-X", "-d", "shop"], &[], false).unwrap();
    let pre = String::from_utf8(v.stdin_preamble.unwrap()).unwrap();
    assert!(
        pre.starts_with("\\restrict ") && pre.ends_with('\n') && pre.len() > 30,
        "{pre}"
    );
    let v = vet_with(&["mariadb", "--no-defaults", "-e", "SELECT 1"], &[], false).unwrap();
    assert_eq!(
        v.argv,
        argv(&[
            "mariadb",
            "--no-defaults",
            "--sandbox",
            "--local-infile=0",
            "-e",
            "SELECT 1"
        ])
    );
}

#[test]
fn grants_of_programs_that_run_code_need_unsafe_args() {
    for g in [
        "cat **",
        "dd **",
        "rm -rf **",
        "mv -f **",
        "sh -c *",
        "/bin/bash **",
        "python3 *",
        "env **",
        "find / **",
    ] {
        let e = check_grant(g, false).unwrap_err();
        assert!(e.contains("unsafeArgs"), "{g}: {e}");
        assert!(check_grant(g, true).unwrap().is_some(), "{g}");
    }
    // Exact argv is fine; so are wildcards for programs with a policy.
    assert_eq!(check_grant("cat /proc/loadavg", false).unwrap(), None);
    assert_eq!(check_grant("PGPASSWORD=* pg_dump **", false).unwrap(), None);
    // A program nobody reviewed gets a warning; a wildcard program is refused.
    assert!(check_grant("mongodump **", false).unwrap().is_some());
    assert!(check_grant("pg_* **", false).is_err());
}
