//! A plugin that uses std::fs and std::net, so its component imports wasi:filesystem and
//! wasi:sockets: the host must refuse it before compiling it.

use coffer_plugin_sdk::{self as sdk, ActionOutput, ActionRequest, Error, Plugin};

struct FsReader;

sdk::export_plugin!(FsReader, "manifest.json");

impl Plugin for FsReader {
    fn validate(_req: &ActionRequest) -> Result<(), Vec<String>> {
        Ok(())
    }

    fn run(_req: ActionRequest) -> Result<ActionOutput, Error> {
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(|e| sdk::internal(e.to_string()))?;
        let sock = std::net::TcpStream::connect("127.0.0.1:5432")
            .map_err(|e| sdk::internal(e.to_string()))?;
        drop(sock);
        Err(sdk::internal(format!("read {} bytes", passwd.len())))
    }
}
