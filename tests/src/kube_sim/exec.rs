//! pods/exec over the websocket protocol the API server speaks (`v5.channel.k8s.io`, or
//! `v4` without the stdin close): binary frames whose first byte is the channel (0 stdin,
//! 1 stdout, 2 stderr, 3 the final Status, 255 close a channel). The command runs as a local
//! process with the container's `env` from the pod spec, in its own process group, killed
//! when the client goes away.

use super::{Request, Shared};
use base64::Engine;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const PASSTHROUGH: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

fn reply(mut conn: &TcpStream, code: u16, reason: &str, message: String) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code})
    .to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Server-to-client frame (unmasked).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        v.push(n as u8);
    } else if n < 65536 {
        v.push(126);
        v.extend((n as u16).to_be_bytes());
    } else {
        v.push(127);
        v.extend((n as u64).to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// A client frame (masked): (opcode, payload).
fn read_frame(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b)?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if h[1] & 0x80 != 0 {
        r.read_exact(&mut mask)?;
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    if h[1] & 0x80 != 0 {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((h[0] & 0x0f, data))
}

fn send(w: &Mutex<TcpStream>, channel: u8, data: &[u8]) -> std::io::Result<()> {
    let mut payload = Vec::with_capacity(data.len() + 1);
    payload.push(channel);
    payload.extend_from_slice(data);
    w.lock().unwrap().write_all(&frame(2, &payload))
}

pub(super) fn serve(req: &Request, shared: &Shared, conn: TcpStream) {
    let seg: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let (ns, pod_name) = match seg.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod, "exec"] => (ns.to_string(), pod.to_string()),
        _ => return reply(&conn, 404, "NotFound", format!("no such path {}", req.path)),
    };
    let pod = shared
        .state
        .lock()
        .unwrap()
        .objects
        .get(&(String::new(), "pods".into(), ns.clone(), pod_name.clone()))
        .cloned();
    let Some(pod) = pod else {
        return reply(
            &conn,
            404,
            "NotFound",
            format!("pods \"{pod_name}\" not found"),
        );
    };
    let param = |k: &str| {
        req.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let argv: Vec<String> = req
        .params
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if argv.is_empty() {
        return reply(
            &conn,
            400,
            "BadRequest",
            "you must specify a command".into(),
        );
    }
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let container = match param("container") {
        Some(c) => containers.iter().find(|x| x["name"] == c),
        None => containers.first(),
    };
    let Some(container) = container else {
        return reply(
            &conn,
            400,
            "BadRequest",
            format!(
                "container {} is not valid for pod {pod_name}",
                param("container").unwrap_or("")
            ),
        );
    };
    let key = req
        .headers
        .get("sec-websocket-key")
        .cloned()
        .unwrap_or_default();
    let offered = req
        .headers
        .get("sec-websocket-protocol")
        .cloned()
        .unwrap_or_default();
    let v5 = offered.contains("v5.channel.k8s.io");
    let accept =
        base64::engine::general_purpose::STANDARD.encode(Sha1::digest(format!("{key}{WS_GUID}")));
    let protocol = if v5 {
        "v5.channel.k8s.io"
    } else {
        "v4.channel.k8s.io"
    };
    let mut c = &conn;
    if write!(
        c,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    )
    .is_err()
    {
        return;
    }
    let stdin_wanted = param("stdin") == Some("true");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    for k in PASSTHROUGH {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    for e in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(n), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            cmd.env(n, v);
        }
    }
    cmd.env("POD_NAME", &pod_name);
    // No mount namespaces here: the first claim the container mounts is where it runs.
    let claim = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .and_then(|vols| {
            let mounted: Vec<&str> = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["name"].as_str())
                .collect();
            vols.iter()
                .find(|v| mounted.contains(&v["name"].as_str().unwrap_or("")))
                .and_then(|v| v.pointer("/persistentVolumeClaim/claimName"))
                .and_then(Value::as_str)
                .map(String::from)
        });
    if let Some(dir) = claim.and_then(|c| {
        shared
            .state
            .lock()
            .unwrap()
            .objects
            .get(&(
                String::new(),
                "persistentvolumeclaims".into(),
                ns.clone(),
                c,
            ))
            .and_then(|o| {
                o.pointer("/metadata/annotations/sim.coffer.dev~1path")
                    .cloned()
            })
    }) {
        cmd.current_dir(dir.as_str().unwrap_or("/"));
    } else if let Some(dir) = container["workingDir"].as_str() {
        cmd.current_dir(dir);
    }
    cmd.stdin(if stdin_wanted {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let writer = Arc::new(Mutex::new(conn.try_clone().unwrap()));
    let finish = |status: Value| {
        let _ = send(&writer, 3, status.to_string().as_bytes());
        let _ = writer.lock().unwrap().write_all(&frame(8, &[0x03, 0xe8]));
        let _ = conn.shutdown(Shutdown::Both);
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // What the container runtime says for a missing binary.
            let msg = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{}\": executable file not found in $PATH: unknown",
                    argv[0]
                )
            } else {
                format!("OCI runtime exec failed: {e}")
            };
            return finish(json!({"metadata": {}, "status": "Failure", "message": msg,
                                 "reason": "InternalError"}));
        }
    };
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    // Client to process: stdin frames, the stdin close, pings; a vanished client kills it.
    let mut stdin = child.stdin.take();
    let mut reader = conn.try_clone().unwrap();
    let (w, d) = (writer.clone(), done.clone());
    std::thread::spawn(move || {
        let mut channel = 0u8;
        while let Ok((op, data)) = read_frame(&mut reader) {
            match op {
                0 | 2 => {
                    let body = if op == 2 {
                        let Some((&c, rest)) = data.split_first() else {
                            continue;
                        };
                        channel = c;
                        if c == 255 {
                            if rest.first() == Some(&0) {
                                stdin = None;
                            }
                            continue;
                        }
                        rest
                    } else {
                        &data[..]
                    };
                    if channel == 0
                        && let Some(s) = stdin.as_mut()
                        && s.write_all(body).is_err()
                    {
                        stdin = None;
                    }
                }
                8 => break,
                9 => {
                    let _ = w.lock().unwrap().write_all(&frame(10, &data));
                }
                _ => {}
            }
        }
        if !d.load(Ordering::SeqCst) {
            // SAFETY: plain syscall on the group created for this child.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    });
    let pump = |mut from: Box<dyn Read + Send>, channel: u8| {
        let w = writer.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 << 10];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || send(&w, channel, &buf[..n]).is_err() {
                    break;
                }
            }
        })
    };
    let out = pump(Box::new(child.stdout.take().unwrap()), 1);
    let err = pump(Box::new(child.stderr.take().unwrap()), 2);
    let status = child.wait();
    done.store(true, Ordering::SeqCst);
    let _ = out.join();
    let _ = err.join();
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
        Err(_) => 137,
    };
    if code == 0 {
        finish(json!({"metadata": {}, "status": "Success"}));
    } else {
        finish(json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {argv:?}: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}}));
    }
}
