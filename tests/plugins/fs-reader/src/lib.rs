//! A plugin that uses std::fs and std::net, so its component imports wasi:filesystem and
//! wasi:sockets: the host must refuse it before compiling it.

use coffer_plugin_sdk::{self as sdk, Action, ActionOutput, ActionRequest, Error, NoParams};

struct Backup;

sdk::export_plugin!(manifest: "manifest.json", actions: [Backup]);

impl Action for Backup {
    const NAME: &'static str = "backup";
    type Params = NoParams;

    fn run(_: NoParams, _: &ActionRequest) -> Result<ActionOutput, Error> {
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(|e| sdk::internal(e.to_string()))?;
        let sock = std::net::TcpStream::connect("127.0.0.1:5432")
            .map_err(|e| sdk::internal(e.to_string()))?;
        drop(sock);
        Err(sdk::internal(format!("read {} bytes", passwd.len())))
    }
}
