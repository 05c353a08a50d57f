//! `net`: connect to each peer, send a line, read the answer; then try what no grant
//! allows (listening, UDP, wasi's own name lookup). Each outcome is an output.

use super::Params;
use coffer_plugin_sdk::{ActionOutput, Error, net};
use std::io::{Read, Write};

pub(crate) fn connect_all(p: &Params) -> Result<ActionOutput, Error> {
    let mut outputs = Vec::new();
    for (i, peer) in p.peers.iter().enumerate() {
        let answer = match talk(peer) {
            Ok(a) => format!("ok {a}"),
            Err(e) => format!("error: {}", coffer_plugin_sdk::error_text(&e)),
        };
        outputs.push((format!("n{i}"), answer));
    }
    let listen = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(l) => format!("listening on {:?}", l.local_addr()),
        Err(e) => format!("error: {e}"),
    };
    let udp = match std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.send_to(b"x", "127.0.0.1:9"))
    {
        Ok(n) => format!("sent {n}"),
        Err(e) => format!("error: {e}"),
    };
    let lookup = match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
        Ok(a) => format!("resolved {:?}", a.collect::<Vec<_>>()),
        Err(e) => format!("error: {e}"),
    };
    for (key, value) in [("listen", listen), ("udp", udp), ("lookup", lookup)] {
        outputs.push((key.to_string(), value));
    }
    let mut out = super::ok_artifact()?;
    out.outputs = outputs;
    Ok(out)
}

fn talk(peer: &str) -> Result<String, Error> {
    let mut s = net::connect(peer)?;
    s.write_all(b"hello from wasm\n")
        .map_err(|e| Error::Io(e.to_string()))?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| Error::Io(e.to_string()))?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}
