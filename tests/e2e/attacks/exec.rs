//! exec: a grant is a promise about what the granted program can do. Each test tries what a
//! hostile plugin would, with real programs, and checks the attack's effect never happened.

use super::common::{self, Fixture, error_of};
use coffer::model::Phase;
use coffer_tests::{random_hex, test_plugin};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A marker path an attack would create.
fn marker(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-{}", random_hex(4)))
}

/// Run `argv` through the hostile plugin's `run` mode.
async fn run(
    f: &Fixture,
    argv: &[&str],
    env: &[(&str, &str)],
    secret_env: &[&str],
) -> coffer::model::ActionSet {
    let env: serde_json::Map<String, serde_json::Value> = env
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    common::run(
        f,
        "backup",
        "run",
        serde_json::json!({"argv": argv, "env": env, "secretEnv": secret_env}),
    )
    .await
}

/// The Workload again, with `env` (YAML flow mapping entries).
fn workload_env(f: &Fixture, env: &str, secret_file: &Path) {
    let yaml = format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: victim}}\nspec: {{blueprint: hostile, env: {{{env}}}, secrets: {{password: {{file: {}}}}}}}\n",
        secret_file.display()
    );
    f.coffer.apply("test", &yaml).unwrap();
}

fn denied(a: &coffer::model::ActionSet) -> String {
    let e = error_of(a).to_string();
    assert!(e.contains("denied"), "not denied: {e}");
    e
}

/// The grants of a built-in Blueprint, as shipped.
fn stock_grants(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../blueprints/{name}.yaml"));
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["spec"]["grants"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_blueprint_grants_stop_every_escape() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim-dir");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "data").unwrap();
    // Every shipped Blueprint, so a new one is covered without a change here.
    let shipped = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(shipped.len() >= 5, "{shipped:?}");
    for blueprint in shipped.iter().map(String::as_str) {
        let mut grants = stock_grants(blueprint);
        // The fixture grants the location and the secret itself.
        grants
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "exec" || k == "unsafeArgs");
        // The hostile plugin under exactly what the stock Blueprint grants.
        let flow = serde_json::to_string(&grants).unwrap();
        let flow = flow.trim_start_matches('{').trim_end_matches('}');
        let f = common::fixture(flow, "{}").await;
        let secret_file = f.home.path().join("../secret-file-of-coffer");
        let m = marker(dir.path(), "m");
        let ms = m.display().to_string();
        let escapes: Vec<Vec<String>> = [
            vec![
                "psql",
                "-X",
                "-h",
                "/nonexistent",
                "-o",
                &format!("|touch {ms}"),
            ],
            vec![
                "psql",
                "-X",
                "--no-password",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--dbname=x",
                "-c",
                &format!("\\! touch {ms}"),
            ],
            vec![
                "pg_dump",
                "--format=custom",
                "--compress=0",
                "--no-password",
                "--dbname=x",
                "-f",
                &ms,
            ],
            vec![
                "pg_dumpall",
                "--globals-only",
                "--no-password",
                "--dbname=x",
                &format!("--file={ms}"),
            ],
            vec![
                "mariadb",
                "--no-defaults",
                &format!("--tee={ms}"),
                "-e",
                "select 1",
            ],
            vec![
                "mariadb",
                "--no-defaults",
                "--plugin-dir=/tmp",
                "--default-auth=x",
                "-e",
                "select 1",
            ],
            vec![
                "mariadb-dump",
                "--no-defaults",
                &format!("--result-file={ms}"),
                "--system=users",
                "--insert-ignore",
                "--skip-dump-date",
            ],
            vec!["redis-cli", "--no-auth-warning", "--rdb", &ms],
            vec![
                "etcdctl",
                "--dial-timeout=5s",
                "--command-timeout=5s",
                "snapshot",
                "save",
                &ms,
            ],
            vec![
                "etcdctl",
                "snapshot",
                "restore",
                "/etc/passwd",
                &format!("--data-dir={ms}"),
            ],
            vec!["cat", &secret_file.display().to_string()],
            vec!["dd", "if=/etc/passwd", &format!("of={ms}")],
            vec!["rm", "-rf", &victim.display().to_string()],
            vec!["mv", "-f", &victim.join("keep").display().to_string(), &ms],
            vec!["redis-check-rdb", "/etc/passwd"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for argv in escapes {
            let a: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = run(&f, &a, &[], &[]).await;
            let e = denied(&out);
            assert!(!m.exists(), "{blueprint}: {a:?} created {}", m.display());
            assert!(
                victim.join("keep").exists(),
                "{blueprint}: {a:?} removed the victim"
            );
            assert!(!e.is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_never_runs_a_shell_through_its_output_option() {
    let dir = tempfile::tempdir().unwrap();
    let m = marker(dir.path(), "pipe");
    let f = common::fixture(r#"exec: ["PGPASSWORD=* psql **"]"#, "{}").await;
    let cmd = format!("|touch {}", m.display());
    for argv in [
        vec!["psql", "-X", "-h", "/nonexistent", "-o", &cmd],
        vec![
            "psql",
            "-X",
            "-h",
            "/nonexistent",
            &format!("--output={cmd}"),
        ],
        vec!["psql", "-Xqo", &cmd, "-h", "/nonexistent"],
    ] {
        let e = denied(&run(&f, &argv, &[], &[]).await);
        assert!(e.contains("--output"), "{e}");
    }
    assert!(!m.exists(), "the shell command ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_on_psql_stdin_cannot_run_meta_commands() {
    let pg = coffer_tests::postgres::Postgres::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2) = (marker(dir.path(), "shell"), marker(dir.path(), "copy"));
    let f = common::fixture(r#"exec: ["PGPASSWORD=* psql **"]"#, "{}").await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "unused").unwrap();
    workload_env(
        &f,
        &format!(
            "PGHOST: 127.0.0.1, PGPORT: \"{}\", PGUSER: postgres",
            pg.port
        ),
        secret_file.path(),
    );
    // What a plugin can write to a restore's stdin (or store as a "dump" and replay).
    let script = format!(
        "SELECT 1;\n\\! touch {}\n\\copy (select 1) to '{}'\n\\unrestrict guess\n\\! touch {}\n",
        m1.display(),
        m2.display(),
        m1.display()
    );
    let a = common::run(
        &f,
        "backup",
        "run",
        serde_json::json!({"argv": ["psql", "-X", "-q", "--dbname=postgres"], "stdin": script}),
    )
    .await;
    // psql reads on after a refused meta-command (no ON_ERROR_STOP): the action may
    // succeed, but nothing ran.
    assert!(
        matches!(a.status.phase, Phase::Completed | Phase::Failed),
        "{a:?}"
    );
    assert!(!m1.exists(), "\\! ran a shell command");
    assert!(!m2.exists(), "\\copy wrote a file");
}

#[tokio::test(flavor = "multi_thread")]
async fn perl_and_path_variables_cannot_choose_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let m = marker(dir.path(), "perl");
    // Even an operator who grants the names cannot let them through.
    let f = common::fixture(r#"exec: ["PERL5OPT=* PERL5DB=* PATH=* pg_dump **"]"#, "{}").await;
    let debugger = format!("BEGIN {{ system(\"touch {}\") }}", m.display());
    let e = denied(
        &run(
            &f,
            &["pg_dump", "--version"],
            &[("PERL5OPT", "-d"), ("PERL5DB", &debugger)],
            &[],
        )
        .await,
    );
    assert!(e.contains("PERL5"), "{e}");
    assert!(
        !m.exists(),
        "Debian's pg_wrapper (perl) ran the debugger hook"
    );

    // PATH: a fake pg_dump in a directory the plugin names.
    let fake_dir = dir.path().join("bin");
    std::fs::create_dir(&fake_dir).unwrap();
    let m2 = marker(dir.path(), "path");
    let fake = fake_dir.join("pg_dump");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\n/usr/bin/touch {}\n", m2.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = denied(
        &run(
            &f,
            &["pg_dump", "--version"],
            &[("PATH", &fake_dir.display().to_string())],
            &[],
        )
        .await,
    );
    assert!(e.contains("PATH"), "{e}");
    assert!(!m2.exists(), "the plugin's PATH chose the program");
    // The operator's Workload PATH does choose it: the program is looked up there.
    let secret = tempfile::NamedTempFile::new().unwrap();
    workload_env(&f, &format!("PATH: {}", fake_dir.display()), secret.path());
    let a = run(&f, &["pg_dump", "--version"], &[], &[]).await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert!(
        m2.exists(),
        "the Workload's PATH is where programs are found"
    );
}

/// A PostgreSQL "server" that asks for the password in clear text and keeps what it gets.
fn password_catcher() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let read_packet = |c: &mut std::net::TcpStream| -> Option<Vec<u8>> {
                    let mut len = [0u8; 4];
                    c.read_exact(&mut len).ok()?;
                    let n = u32::from_be_bytes(len).saturating_sub(4) as usize;
                    let mut body = vec![0u8; n.min(1 << 16)];
                    c.read_exact(&mut body).ok()?;
                    Some(body)
                };
                // SSL and GSS requests are declined; then the startup packet.
                loop {
                    let Some(p) = read_packet(&mut c) else { return };
                    if p.len() == 4
                        && matches!(
                            u32::from_be_bytes(p[..4].try_into().unwrap()),
                            80877103 | 80877104
                        )
                    {
                        let _ = c.write_all(b"N");
                        continue;
                    }
                    break;
                }
                // AuthenticationCleartextPassword.
                let _ = c.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
                let mut buf = vec![0u8; 4096];
                if let Ok(n) = c.read(&mut buf) {
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_only_goes_to_the_server_the_workload_names() {
    let (catcher, got) = password_catcher();
    let secret = tempfile::NamedTempFile::new().unwrap();
    let password = format!("pw-{}", random_hex(8));
    std::fs::write(secret.path(), &password).unwrap();
    // The operator even lets the plugin set PGHOST/PGPORT: the Workload's values still win.
    let f = common::fixture(r#"exec: ["PGPASSWORD=* PGHOST=* PGPORT=* psql **"]"#, "{}").await;
    workload_env(&f, "PGHOST: 127.0.0.1, PGPORT: \"1\"", secret.path());
    let port = catcher.to_string();
    let e = denied(
        &run(
            &f,
            &["psql", "-X", "-w", "-c", "SELECT 1"],
            &[("PGPORT", &port)],
            &["PGPASSWORD"],
        )
        .await,
    );
    assert!(e.contains("PGPORT") && e.contains("spec.env"), "{e}");
    for argv in [
        vec!["psql", "-X", "-w", "-p", &port, "-c", "SELECT 1"],
        vec![
            "psql",
            "-X",
            "-w",
            &format!("--port={port}"),
            "-c",
            "SELECT 1",
        ],
        vec![
            "psql",
            "-X",
            "-w",
            &format!("--dbname=host=127.0.0.1 port={port} dbname=x"),
            "-c",
            "SELECT 1",
        ],
        vec![
            "psql",
            "-X",
            "-w",
            &format!("postgresql://127.0.0.1:{port}/x"),
            "-c",
            "SELECT 1",
        ],
    ] {
        let e = denied(&run(&f, &argv, &[], &["PGPASSWORD"]).await);
        assert!(e.contains("port") || e.contains("URI"), "{e}");
    }
    // With no pin, a process holding the password may not name a server at all.
    workload_env(&f, "", secret.path());
    let e = denied(
        &run(
            &f,
            &[
                "psql",
                "-X",
                "-w",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-c",
                "SELECT 1",
            ],
            &[],
            &["PGPASSWORD"],
        )
        .await,
    );
    assert!(e.contains("must be pinned"), "{e}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        !seen.contains(&password),
        "the password reached the plugin's server"
    );
    assert!(
        seen.is_empty(),
        "a connection reached the plugin's server: {seen:?}"
    );
    // The same catcher does get it when the operator points the Workload there: the test
    // would see a leak.
    workload_env(
        &f,
        &format!("PGHOST: 127.0.0.1, PGPORT: \"{port}\""),
        secret.path(),
    );
    let _ = run(&f, &["psql", "-X", "-c", "SELECT 1"], &[], &["PGPASSWORD"]).await;
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(String::from_utf8_lossy(&got.lock().unwrap()).contains(&password));
    let _ = test_plugin;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_leaves_its_group_is_stopped_with_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let m = marker(dir.path(), "setsid");
    let f = common::fixture(r#"exec: ["sh -c * *"], unsafeArgs: true"#, "{}").await;
    let a = common::run(
        &f,
        "backup",
        "setsid-escape",
        serde_json::json!({"path": m.display().to_string()}),
    )
    .await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    // The detached child would touch the marker two seconds after it started.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(!m.exists(), "a process outlived the action");
}

/// A psql that predates `\restrict` would run the meta-commands of a script on its stdin:
/// it is not given one.
#[tokio::test(flavor = "multi_thread")]
async fn an_old_psql_gets_no_script() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let m = marker(dir.path(), "old-psql");
    std::fs::write(
        bin.join("psql"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'psql (PostgreSQL) 15.3'; exit 0; fi\n/usr/bin/touch {}\ncat > /dev/null\n",
            m.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("psql"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = common::fixture(r#"exec: ["PGPASSWORD=* psql **"]"#, "{}").await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    workload_env(&f, &format!("PATH: {}", bin.display()), secret.path());
    let a = common::run(
        &f,
        "backup",
        "run",
        serde_json::json!({"argv": ["psql", "-X", "-q", "--dbname=postgres"], "stdin": "\\! id\n"}),
    )
    .await;
    let e = denied(&a);
    assert!(
        e.contains("psql 15.3 cannot switch off its meta-commands"),
        "{e}"
    );
    assert!(!m.exists(), "the old psql was started with the script");
}

/// `spec.runAs`: the Workload's processes run as that user (its uid, group and groups, its
/// HOME), never as root; a user that does not exist is refused when the Workload is
/// applied.
#[tokio::test(flavor = "multi_thread")]
async fn run_as_starts_processes_as_the_workload_user() {
    let f = common::fixture(r#"exec: ["sh **"], unsafeArgs: true"#, "{}").await;
    let yaml = |user: &str| {
        format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: victim}}\nspec: {{blueprint: hostile, runAs: {user}}}\n"
        )
    };
    let e = f
        .coffer
        .apply("test", &yaml("no-such-user-coffer"))
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("no user \"no-such-user-coffer\""),
        "{e:#}"
    );

    f.coffer.apply("test", &yaml("nobody")).unwrap();
    let nobody = coffer::cap::exec::run_as::RunAs::lookup("nobody").unwrap();
    let a = run(&f, &["sh", "-c", "id -u"], &[], &[]).await;
    assert_eq!(a.status.phase, Phase::Completed, "{:?}", a.status.error);
    assert_eq!(a.status.outputs["stdout"].trim(), nobody.uid.to_string());
    let a = run(&f, &["sh", "-c", "id -G"], &[], &[]).await;
    let groups = a.status.outputs["stdout"].trim().to_string();
    assert!(
        !groups.split(' ').any(|g| g == "0"),
        "still in root's group: {groups}"
    );
    // Whatever it runs cannot do what root could.
    let a = run(
        &f,
        &["sh", "-c", "touch /root/coffer-run-as-marker"],
        &[],
        &[],
    )
    .await;
    assert_eq!(a.status.phase, Phase::Failed);
    assert!(!Path::new("/root/coffer-run-as-marker").exists());
    let a = run(&f, &["sh", "-c", "echo $HOME $USER"], &[], &[]).await;
    assert_eq!(
        a.status.outputs["stdout"].trim(),
        format!("{} nobody", nobody.home.display())
    );
}
