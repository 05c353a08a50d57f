//! A plugin that misbehaves in the way `params.mode` asks, so tests can check that the host
//! stops each misbehaviour cleanly and stays healthy.

use coffer_plugin_sdk::{
    self as sdk, Action, ActionOutput, ActionRequest, Cmd, Error, ErrorContext, JsonSchema, exec,
    kube, location, secrets, snapshot, types,
};
use serde::Deserialize;

struct Backup;
struct Restore;
struct Delete;

mod consistency;
mod net;
mod signed;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup, Restore, Delete]);

// Every action takes the same params and misbehaves as `mode` says; nothing is refused
// before it runs (unknown fields included), so the host's own checks are what is tested.
macro_rules! hostile_action {
    ($t:ty, $name:literal) => {
        impl Action for $t {
            const NAME: &'static str = $name;
            type Params = Params;

            fn run(p: Params, req: &ActionRequest) -> Result<ActionOutput, Error> {
                hostile(p, req)
            }
        }
    };
}
hostile_action!(Backup, "backup");
hostile_action!(Restore, "restore");
hostile_action!(Delete, "delete");

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "coffer_plugin_sdk::schemars")]
#[serde(rename_all = "camelCase")]
pub(crate) struct Params {
    #[serde(default)]
    mode: String,
    /// For `stream`: how many random bytes to back up.
    #[serde(default)]
    bytes: u64,
    /// For `file`: the file a backup reads and a restore writes.
    #[serde(default)]
    path: String,
    /// For `snapshot`: the claim to snapshot and the new claim to restore it into.
    #[serde(default)]
    pvc: String,
    #[serde(default)]
    target: String,
    /// For `task`: the task pod's image.
    #[serde(default)]
    image: String,
    /// For `run`: a command, its environment, the variables the password secret goes in,
    /// and what to write to its stdin.
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    secret_env: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
    /// For `audit-flood`: how many calls.
    #[serde(default)]
    count: u64,
    /// For `guards`: commands registered as guards, in order; then `argv` runs (the
    /// guarded step), inside a quiesce window when `quiesce`, and the plugin does what
    /// `then` says: `fire` (each, in order), `disarm`, `fail`, `hang`, `trap`, or leaves
    /// them armed.
    #[serde(default)]
    guards: Vec<Vec<String>>,
    #[serde(default)]
    quiesce: bool,
    #[serde(default)]
    then: String,
    /// For `signed`: requests to have signed and sent.
    #[serde(default)]
    requests: Vec<signed::SignedRequest>,
    /// For `net`: `host:port`s to connect to (each sent a line, its answer read).
    #[serde(default)]
    peers: Vec<String>,
}

fn hostile(p: Params, req: &ActionRequest) -> Result<ActionOutput, Error> {
    if req.action == "delete" && p.mode.is_empty() {
        // A well-behaved delete: remove what the backup stored.
        let store = location::open("default")?;
        for a in &req.input_artifacts {
            store.delete(&a.key)?;
        }
        return Ok(ActionOutput {
            artifacts: vec![],
            outputs: vec![],
        });
    }
    match p.mode.as_str() {
        "net" => net::connect_all(&p),
        // A bug: the plugin panics (a wasm trap).
        "trap" => panic!("hostile plugin: deliberate trap"),
        // A runaway loop that never calls the host.
        "loop" => {
            let mut x: u64 = 1;
            loop {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                if x == 0 {
                    break;
                }
            }
            Err(sdk::internal(format!("unreachable {x}")))
        }
        // Unbounded allocation.
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                if hoard.len() == usize::MAX {
                    break;
                }
            }
            Err(sdk::internal(format!("unreachable {}", hoard.len())))
        }
        // Exec of a command the manifest declares but the test Blueprint does not grant.
        "exec-not-granted" => {
            Cmd::new(["sh", "-c", "id"]).run(None, 1024)?;
            Err(sdk::internal("exec was allowed"))
        }
        // A key that tries to leave the action's prefix.
        "escape-key" => {
            let store = location::open("default")?;
            store.put_bytes("../../escape", b"x", &opts(location::Compression::None))?;
            Err(sdk::internal("escape was allowed"))
        }
        "escape-stream" => {
            let store = location::open("default")?;
            sdk::io::ObjectStream::create(
                &store,
                "../../escape",
                &opts(location::Compression::None),
            )?;
            Err(sdk::internal("escape was allowed"))
        }
        // Write a partial object, then fail: no restore point may result.
        "fail-after-write" => {
            let store = location::open("default")?;
            let proc = Cmd::new(["echo", "partial data"]).spawn()?;
            let t = store.put(
                "part.bin",
                proc.take_stdout().unwrap(),
                &opts(location::Compression::Zstd),
            )?;
            proc.wait()?;
            t.wait()?;
            Err(sdk::internal("deliberate failure after writing"))
        }
        // Leave a process behind that left the process group, then finish well: it
        // would touch `path` two seconds later.
        "setsid-escape" => {
            Cmd::new([
                "sh",
                "-c",
                "setsid sh -c 'sleep 2; touch \"$0\"' \"$0\" > /dev/null 2>&1 &",
            ])
            .arg(&p.path)
            .run(None, 1024)?;
            ok_artifact()
        }
        // Start many uploads at once, each of `bytes` zeros.
        "many-puts" => {
            let store = location::open("default")?;
            let mut running = Vec::new();
            for i in 0..p.count {
                let proc = Cmd::new(["head", "-c", &p.bytes.to_string(), "/dev/zero"]).spawn()?;
                let t = store.put(
                    &format!("part-{i}.bin"),
                    proc.take_stdout().unwrap(),
                    &opts(location::Compression::None),
                )?;
                running.push((proc, t));
            }
            let mut last = None;
            for (proc, t) in running {
                proc.wait()?;
                last = Some(t.wait()?);
            }
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("part", "default", &last.unwrap())],
                outputs: vec![],
            })
        }
        // Write an object, wait `bytes` seconds in a process, then finish well.
        "slow-ok" => {
            let store = location::open("default")?;
            let info = store.put_bytes(
                "part.bin",
                b"written before the wait",
                &opts(location::Compression::Zstd),
            )?;
            Cmd::new(["sleep", &p.bytes.to_string()]).run(None, 1024)?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("part", "default", &info)],
                outputs: vec![],
            })
        }
        // Write a whole object, then block in a long host call: the test kills coffer here.
        "hang-after-write" => {
            let store = location::open("default")?;
            store.put_bytes(
                "part.bin",
                b"written before the crash",
                &opts(location::Compression::Zstd),
            )?;
            Cmd::new(["sleep", "30"]).run(None, 1024)?;
            Err(sdk::internal("coffer was not killed"))
        }
        // Get a secret's value printed by a process and put it into an error: the host must
        // redact it before it reaches the ActionSet or the logs.
        "leak-secret" => {
            let pw = secrets::get("password")?;
            let out = Cmd::new(["cat", "/proc/self/environ"])
                .secret_env("COFFER_PW", Some(&pw))
                .run(None, 1 << 20)?;
            let text = String::from_utf8_lossy(&out).replace('\0', " ");
            Err(sdk::internal(format!("leaked: {text}")))
        }
        // Unbounded recursion: a wasm stack overflow.
        "recurse" => Err(sdk::internal(format!("depth {}", recurse(0)))),
        // Start streaming a process into an object, then trap before waiting for it.
        "trap-mid-transfer" => {
            let store = location::open("default")?;
            let proc = Cmd::new(["head", "-c", "50000000", "/dev/zero"]).spawn()?;
            let _t = store.put(
                "big.bin",
                proc.take_stdout().unwrap(),
                &opts(location::Compression::None),
            )?;
            panic!("hostile plugin: trap in the middle of a transfer");
        }
        // Put a secret's value into a log line (the host must redact it).
        "leak-in-log" => {
            let pw = secrets::get("password")?;
            let out = Cmd::new(["cat", "/proc/self/environ"])
                .secret_env("COFFER_PW", Some(&pw))
                .run(None, 1 << 20)?;
            let text = String::from_utf8_lossy(&out).replace('\0', " ");
            sdk::log::warn(&format!("environment: {text}"), &[("env", &text)]);
            ok_artifact()
        }
        // A process that fails with a message on stderr.
        "exec-fails" => {
            Cmd::new(["cat", "/nonexistent/coffer-test"]).run(None, 1024)?;
            Err(sdk::internal("cat succeeded"))
        }
        // Hoard handles until the host says no.
        "handles" => {
            let mut hoard = Vec::new();
            for _ in 0..5000 {
                hoard.push(location::open("default")?);
            }
            Err(sdk::internal(format!(
                "{} handles were allowed",
                hoard.len()
            )))
        }
        // A flood of log lines.
        "log-flood" => {
            for i in 0..200_000u32 {
                sdk::log::info("flood", &[("i", &i.to_string())]);
            }
            ok_artifact()
        }
        // A process whose output is far larger than exec.run may capture.
        "stdout-flood" => {
            Cmd::new(["head", "-c", "100000000", "/dev/zero"]).run(None, u32::MAX)?;
            Err(sdk::internal("100 MB were captured"))
        }
        // Back up `bytes` random bytes through the host's data path (benchmarks).
        // Write `bytes` of a known pattern as an object stream; `write-abandon` drops the
        // stream unfinished and ends well (with another artifact).
        "write" | "write-abandon" => {
            use std::io::Write;
            let store = location::open("default")?;
            let mut out = sdk::io::ObjectStream::create(
                &store,
                "written.bin",
                &opts(location::Compression::Zstd),
            )?;
            let mut chunk = Vec::with_capacity(100_000);
            let mut at = 0u64;
            while at < p.bytes {
                chunk.clear();
                let n = (p.bytes - at).min(100_000);
                chunk.extend((at..at + n).map(pattern));
                out.write_all(&chunk)
                    .map_err(|e| sdk::internal(e.to_string()))?;
                at += n;
            }
            if p.mode == "write-abandon" {
                drop(out);
                return ok_artifact();
            }
            let info = out.finish()?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("written", "default", &info)],
                outputs: vec![],
            })
        }
        "stream" => {
            let store = location::open("default")?;
            let proc = Cmd::new(["head", "-c"])
                .arg(p.bytes.to_string())
                .arg("/dev/urandom")
                .spawn()?;
            let t = store.put(
                "stream.bin",
                proc.take_stdout().unwrap(),
                &opts(location::Compression::Zstd),
            )?;
            sdk::check_exit("head", &proc.wait()?)?;
            let info = t.wait()?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("stream", "default", &info)],
                outputs: vec![],
            })
        }
        // Back up one file (`cat`), or restore it (`sh -c 'cat > path'`): a byte-exact
        // round trip through the data path, for location tests.
        // Restore by reading the object as a stream (`location-reader`): its bytes (or
        // those of the key in `path`) as output `read`, once the host said they were whole.
        "read-stream" if req.action == "restore" => {
            let store = location::open("default")?;
            if p.count > 0 {
                Cmd::new(["sleep", &p.count.to_string()]).run(None, 0)?;
            }
            let key = if p.path.is_empty() {
                "file.bin"
            } else {
                &p.path
            };
            let mut r = sdk::io::ObjectReader::open(&store, key)?;
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut got).map_err(|e| Error::Io(e.to_string()))?;
            r.finish()?;
            Ok(ActionOutput {
                artifacts: vec![],
                outputs: vec![("read".into(), String::from_utf8_lossy(&got).into_owned())],
            })
        }
        "file" if req.action == "restore" => {
            let store = location::open("default")?;
            // `count` seconds between the host's verification and the read.
            if p.count > 0 {
                Cmd::new(["sleep", &p.count.to_string()]).run(None, 0)?;
            }
            let proc = Cmd::new(["sh", "-c", "cat > \"$0\""])
                .arg(&p.path)
                .stdin()
                .spawn()?;
            let stdin = proc
                .take_stdin()
                .ok_or_else(|| sdk::internal("process has no stdin"))?;
            let fed = store.get_into("file.bin", stdin)?.wait();
            let status = proc.wait()?;
            fed?;
            sdk::check_exit("sh", &status)?;
            Ok(ActionOutput {
                artifacts: vec![],
                outputs: vec![],
            })
        }
        "file" => {
            let store = location::open("default")?;
            let proc = Cmd::new(["cat"]).arg(&p.path).spawn()?;
            let t = store.put(
                "file.bin",
                proc.take_stdout().unwrap(),
                &opts(location::Compression::Zstd),
            )?;
            let status = proc.wait()?;
            let info = t.wait()?;
            sdk::check_exit("cat", &status)?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("file", "default", &info)],
                outputs: vec![],
            })
        }
        // The SDK's std::io adapters and error context (the slow path).
        "io-adapters" => {
            use std::io::{Read, Write};
            let store = location::open("default")?;
            let proc = Cmd::new(["cat"]).stdin().spawn()?;
            let mut w = sdk::io::StreamWriter(proc.take_stdin().unwrap());
            w.write_all(b"hello via io\n")
                .map_err(|e| sdk::internal(e.to_string()))?;
            drop(w);
            let mut text = String::new();
            sdk::io::StreamReader(proc.take_stdout().unwrap())
                .read_to_string(&mut text)
                .map_err(|e| sdk::internal(e.to_string()))?;
            sdk::check_exit("cat", &proc.wait()?).context("running cat")?;
            let mut obj =
                sdk::io::ObjectWriter::new(&store, "io.txt", opts(location::Compression::Zstd));
            write!(obj, "cat said: {text}").map_err(|e| sdk::internal(e.to_string()))?;
            let info = obj.finish()?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("io", "default", &info)],
                outputs: vec![],
            })
        }
        "context-error" => {
            Cmd::new(["false"]).run(None, 0).context("step one")?;
            Err(sdk::internal("false succeeded"))
        }
        // The kube capability: list, scale down and back, wait, apply, get, and a call
        // the manifest does not declare.
        "kube" => {
            let sts = types::ObjectRef {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                namespace: Some("db".into()),
                name: "pg".into(),
            };
            let listed = kube::list_objects("apps/v1", "StatefulSet", Some("db"), Some("app=pg"))?;
            let previous = kube::scale(&sts, 0)?;
            kube::wait_for(&sts, "jsonpath={.spec.replicas}=0", 5000)?;
            let marker = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"coffer-marker","namespace":"db"}},"data":{{"previous":"{previous}"}}}}"#
            );
            kube::apply(&marker, "coffer")?;
            let back = kube::scale(&sts, previous)?;
            let secret = types::ObjectRef {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some("db".into()),
                name: "pg-password".into(),
            };
            let denied = match kube::get(&secret) {
                Err(Error::Denied(m)) => m,
                other => {
                    return Err(sdk::internal(format!(
                        "Secret get was not denied: {other:?}"
                    )));
                }
            };
            Ok(ActionOutput {
                artifacts: vec![],
                outputs: vec![
                    ("listed".into(), listed.len().to_string()),
                    ("previous".into(), previous.to_string()),
                    ("scaledFrom".into(), back.to_string()),
                    ("denied".into(), denied),
                ],
            })
        }
        // Make the host record as much as it can: `count` refused calls whose names and
        // errors are `bytes` long, then outputs and artifact metadata of that size.
        "audit-flood" => {
            let big = "x".repeat(p.bytes as usize);
            for _ in 0..p.count {
                let _ = secrets::get(&big);
            }
            let store = location::open("default")?;
            let info = store.put_bytes("data.txt", b"flood", &opts(location::Compression::Zstd))?;
            // What a call may return is capped by the host (limits.hostcallPayload): ten
            // half-megabyte values of each.
            let half = "y".repeat((p.bytes / 2) as usize);
            let mut a = sdk::artifact("data", "default", &info);
            for i in 0..10 {
                a.metadata.push((format!("k{i}"), half.clone()));
            }
            Ok(ActionOutput {
                artifacts: vec![a],
                outputs: (0..10).map(|i| (format!("o{i}"), half.clone())).collect(),
            })
        }
        // Put the password where a plugin may put words: an artifact's metadata and
        // name, an output, a log line, an object key.
        "secret-in-record" => {
            let pw = secrets::get("password")?;
            let out = Cmd::new(["cat", "/proc/self/environ"])
                .secret_env("COFFER_PW", Some(&pw))
                .run(None, 1 << 20)?;
            let env = String::from_utf8_lossy(&out).replace('\0', " ");
            let value = env
                .split(' ')
                .find_map(|kv| kv.strip_prefix("COFFER_PW="))
                .unwrap_or_default()
                .to_string();
            let store = location::open("default")?;
            let refused_key = match store.put_bytes(
                &format!("k-{value}"),
                b"x",
                &opts(location::Compression::None),
            ) {
                Err(e) => sdk::error_text(&e),
                Ok(_) => "ALLOWED".into(),
            };
            let info = store.put_bytes("data.txt", b"x", &opts(location::Compression::Zstd))?;
            let mut a = sdk::artifact(&format!("name-{value}"), "default", &info);
            a.metadata.push(("pw".into(), value.clone()));
            a.metadata.push((format!("key-{value}"), "v".into()));
            sdk::log::info(&format!("the password is {value}"), &[]);
            Ok(ActionOutput {
                artifacts: vec![a],
                outputs: vec![
                    ("pw".into(), value.clone()),
                    ("refusedKey".into(), refused_key),
                ],
            })
        }
        // Reach past the subject's namespace: a namespace that is a URL path, another
        // namespace, a name that is a path, a list elsewhere. Each outcome is reported.
        "kube-escape" => {
            let cm = |ns: Option<&str>, name: &str| types::ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: ns.map(String::from),
                name: name.into(),
            };
            let outcome = |r: Result<String, Error>| match r {
                Ok(v) => format!("ALLOWED: {}", v.chars().take(200).collect::<String>()),
                Err(e) => sdk::error_text(&e),
            };
            let tries = [
                (
                    "injectedNamespace",
                    outcome(kube::get(&cm(
                        Some("kube-system/secrets/coffer-key?x="),
                        "x",
                    ))),
                ),
                (
                    "otherNamespace",
                    outcome(kube::get(&cm(Some("kube-system"), "cluster-info"))),
                ),
                (
                    "pathName",
                    outcome(kube::get(&cm(None, "../../secrets/coffer-key"))),
                ),
                (
                    "otherList",
                    outcome(
                        kube::list_objects("v1", "ConfigMap", Some("kube-system"), None)
                            .map(|v| v.join(",")),
                    ),
                ),
                (
                    "applyElsewhere",
                    outcome(kube::apply(
                        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"planted","namespace":"kube-system"}}"#,
                        "coffer",
                    )),
                ),
                ("ownNamespace", outcome(kube::get(&cm(None, "app-config")))),
            ];
            Ok(ActionOutput {
                artifacts: ok_artifact()?.artifacts,
                outputs: tries.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            })
        }
        // Snapshot a claim, wait until it is ready, restore it into a new claim; a
        // snapshot in another namespace must be denied.
        "snapshot" => {
            let vol = |ns: Option<&str>, name: &str| snapshot::VolumeRef {
                namespace: ns.map(String::from),
                name: name.into(),
            };
            let made = snapshot::create(
                &vol(None, &p.pvc),
                None,
                &[("purpose".into(), "test".into())],
            )?;
            let ready = snapshot::wait_ready(&made.snapshot, 30_000)?;
            snapshot::restore(&ready.snapshot, &vol(None, &p.target), None)?;
            let twice = match snapshot::restore(&ready.snapshot, &vol(None, &p.target), None) {
                Err(Error::Conflict(m)) => m,
                other => {
                    return Err(sdk::internal(format!("restoring over a claim: {other:?}")));
                }
            };
            let denied = match snapshot::create(&vol(Some("elsewhere"), &p.pvc), None, &[]) {
                Err(Error::Denied(m)) => m,
                other => return Err(sdk::internal(format!("another namespace: {other:?}"))),
            };
            // The backup's artifact records which snapshot holds the data.
            let store = location::open("default")?;
            let info = store.put_bytes(
                "snapshot.txt",
                ready.snapshot.name.as_bytes(),
                &opts(location::Compression::Zstd),
            )?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("snapshot", "default", &info)],
                outputs: vec![
                    ("snapshot".into(), ready.snapshot.name.clone()),
                    ("createdReady".into(), made.ready.to_string()),
                    (
                        "restoreSize".into(),
                        ready.restore_size.unwrap_or(0).to_string(),
                    ),
                    ("conflict".into(), twice),
                    ("denied".into(), denied),
                ],
            })
        }
        // A task pod with a claim mounted; commands run in it; one per action; an image
        // the Blueprint does not grant is denied.
        "task" => {
            let pod = exec::task_pod(&p.image, std::slice::from_ref(&p.pvc))?;
            let again = exec::task_pod(&p.image, std::slice::from_ref(&p.pvc))?;
            let out = Cmd::new(["sh", "-c", "echo \"$POD_NAME\"; cat PG_VERSION"])
                .workload(pod.clone())
                .run(None, 4096)?;
            let denied = match exec::task_pod("evil:latest", &[]) {
                Err(Error::Denied(m)) => m,
                other => return Err(sdk::internal(format!("evil image: {other:?}"))),
            };
            let store = location::open("default")?;
            let info = store.put_bytes("task.txt", &out, &opts(location::Compression::Zstd))?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("task", "default", &info)],
                outputs: vec![
                    ("pod".into(), pod.clone()),
                    ("same".into(), (again == pod).to_string()),
                    ("out".into(), String::from_utf8_lossy(&out).into_owned()),
                    ("denied".into(), denied),
                ],
            })
        }
        // Run whatever command the test asks for (what a hostile plugin would try), and
        // report its stdout.
        "run" => {
            let pw = if p.secret_env.is_empty() {
                None
            } else {
                Some(secrets::get("password")?)
            };
            let mut cmd = Cmd::new(p.argv.clone());
            for (k, v) in &p.env {
                cmd = cmd.env(k, v);
            }
            for k in &p.secret_env {
                cmd = cmd.secret_env(k, pw.as_ref());
            }
            let out = match &p.stdin {
                Some(input) => {
                    let proc = cmd.stdin().spawn()?;
                    {
                        use std::io::Write;
                        let mut w = sdk::io::StreamWriter(proc.take_stdin().unwrap());
                        w.write_all(input.as_bytes())
                            .map_err(|e| sdk::internal(e.to_string()))?;
                    }
                    let status = proc.wait()?;
                    sdk::check_exit(&p.argv[0], &status)?;
                    Vec::new()
                }
                None => cmd.run(None, 1 << 20)?,
            };
            let store = location::open("default")?;
            let info = store.put_bytes("data.txt", b"ran", &opts(location::Compression::Zstd))?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("data", "default", &info)],
                outputs: vec![("stdout".into(), String::from_utf8_lossy(&out).into_owned())],
            })
        }
        "guards" => consistency::guarded(&p),
        // A quiesced cut: guard, window, `snapshot.create` in class `target` (returns at
        // the cut), the guard fired and the window ended at once, then `wait-ready`.
        "cut" => consistency::quiesced_cut(&p),
        "signed" => signed::send_all(&p),
        "ok" | "" => {
            let store = location::open("default")?;
            let info = store.put_bytes("data.txt", b"hello", &opts(location::Compression::Zstd))?;
            Ok(ActionOutput {
                artifacts: vec![sdk::artifact("data", "default", &info)],
                outputs: vec![],
            })
        }
        other => Err(sdk::invalid(format!("unknown mode {other:?}"))),
    }
}

/// Store a small object and report it: a successful backup.
/// The byte at offset `i` of what `write` writes (the test computes the same).
fn pattern(i: u64) -> u8 {
    ((i * 31 + i / 4096) % 251) as u8
}

pub(crate) fn ok_artifact() -> Result<ActionOutput, Error> {
    let store = location::open("default")?;
    let info = store.put_bytes("data.txt", b"hello", &opts(location::Compression::Zstd))?;
    Ok(ActionOutput {
        artifacts: vec![sdk::artifact("data", "default", &info)],
        outputs: vec![],
    })
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the optimiser from turning this into a loop; the base case is never
    // reached.
    if depth == u64::MAX {
        return 0;
    }
    let next = std::hint::black_box(depth + 1);
    recurse(next) + std::hint::black_box(1)
}

fn opts(compression: location::Compression) -> location::PutOptions {
    location::PutOptions {
        compression,
        content_type: None,
        metadata: vec![],
    }
}
