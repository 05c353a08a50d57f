//! Real S3 protocol servers for the location tests: moto (faithful multipart and Object
//! Lock semantics, no auth) and s3s-fs (SigV4 checked, data on disk), plus a TCP proxy that
//! can cut the network between coffer and a server while the server keeps its state.

use crate::free_port;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where `.ci/run` installs the servers (cached between runs).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("COFFER_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/coffer-tools")
        })
}

/// Run scripts/test-servers.sh (it installs only what is missing, under a lock).
fn install_tools() {
    crate::ensure_packages();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-servers.sh");
    let status = Command::new(&script)
        .env("COFFER_TOOLS", tools_dir())
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(status.success(), "{} failed", script.display());
}

/// A server binary in `$COFFER_TOOLS`, installed there by scripts/test-servers.sh the first
/// time it is needed (the script locks, so parallel tests install once).
fn find(name: &str, under_tools: &str) -> PathBuf {
    let cached = tools_dir().join(under_tools);
    if cached.exists() {
        return cached;
    }
    install_tools();
    assert!(
        cached.exists(),
        "{name} could not be installed by scripts/test-servers.sh into {}",
        tools_dir().display()
    );
    cached
}

/// Kill -9 a server this test started, if it runs.
fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not start on port {port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// moto does not check signatures, but treats a request without any as anonymous, which
/// some buckets (Object Lock ones) refuse.
const MOTO_AUTH: (&str, &str) = (
    "Authorization",
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
);

/// One HTTP/1.1 request on its own connection, with moto's placeholder signature:
/// (status, response head, body).
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut all = vec![MOTO_AUTH];
    all.extend_from_slice(headers);
    let a = crate::http::request(port, method, path, &all, body);
    (a.status, a.head, a.body)
}

/// A request without a body, the response body as text (for moto, and for checks).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let (status, head, body) = exchange(port, method, path, headers, &[]);
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// A request with a binary body; (status, body bytes).
pub fn http_bytes(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (status, _, body) = exchange(port, method, path, &[], body);
    (status, body)
}

/// Every `<name>` element's text in an XML body.
pub fn xml_all(body: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

pub struct Moto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = find("moto_server", "venv/bin/moto_server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("moto.log");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("starting moto_server");
        crate::reap_with_this_process(child.id(), None);
        wait_for_port(port, "moto_server", &log);
        Moto {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An RDS Query API call (`Action=...&...`), the answer's whole HTTP response (setting up
    /// and checking what a test backs up; moto takes any signature).
    pub fn rds(&self, form: &str) -> String {
        self.query("rds", &format!("{form}&Version=2014-10-31"))
    }

    /// A Query API call to `service` (rds, ec2, ...).
    pub fn query(&self, service: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Create a bucket, with Object Lock enabled when asked.
    pub fn create_bucket(&self, name: &str, object_lock: bool) {
        let h: &[(&str, &str)] = if object_lock {
            &[("x-amz-bucket-object-lock-enabled", "true")]
        } else {
            &[]
        };
        let (status, _, body) = http(self.port, "PUT", &format!("/{name}"), h);
        assert_eq!(status, 200, "creating bucket {name}: {body}");
    }

    /// Keys of multipart uploads still open in `bucket`.
    pub fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let (status, _, body) = http(self.port, "GET", &format!("/{bucket}?uploads"), &[]);
        assert_eq!(status, 200, "listing uploads: {body}");
        xml_all(&body, "Key")
    }

    /// Object keys in `bucket` (current versions).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, _, body) = http(self.port, "GET", &format!("/{bucket}?list-type=2"), &[]);
        assert_eq!(status, 200, "listing {bucket}: {body}");
        xml_all(&body, "Key")
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) = http_bytes(self.port, "GET", &format!("/{bucket}/{key}"), &[]);
        assert_eq!(status, 200, "GET {bucket}/{key}");
        body
    }

    /// Overwrite an object behind coffer's back.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let (status, _) = http_bytes(self.port, "PUT", &format!("/{bucket}/{key}"), data);
        assert_eq!(status, 200, "PUT {bucket}/{key}");
    }

    /// The response headers of a HEAD on an object (lower-cased).
    pub fn head(&self, bucket: &str, key: &str) -> String {
        http(self.port, "HEAD", &format!("/{bucket}/{key}"), &[])
            .1
            .to_lowercase()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct S3sFs {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

pub const S3S_ACCESS_KEY: &str = "coffer-test-key";
pub const S3S_SECRET_KEY: &str = "coffer-test-secret";

impl S3sFs {
    pub fn start() -> S3sFs {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("..").join(format!(
            "s3s-{}.log",
            root.path().file_name().unwrap().to_string_lossy()
        ));
        let mut s = S3sFs {
            port: free_port(),
            root,
            child: None,
            log,
        };
        s.restart();
        s
    }

    /// (Re)start on the same port and directory.
    pub fn restart(&mut self) {
        let bin = find("s3s-fs", "bin/s3s-fs");
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                S3S_ACCESS_KEY,
                "--secret-key",
                S3S_SECRET_KEY,
            ])
            .arg(self.root.path())
            .stdout(std::fs::File::create(&self.log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        crate::reap_with_this_process(child.id(), None);
        self.child = Some(child);
        wait_for_port(self.port, "s3s-fs", &self.log);
    }

    /// Kill -9: the server dies in the middle of whatever it was doing.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bucket is a directory of the root.
    pub fn create_bucket(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A TCP proxy in front of a server. `cut` drops every connection and refuses new ones,
/// as a dead server would, while the server behind it keeps its state; `resume` undoes it.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut c = conns2.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, up, conns }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn resume(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite, the Azure Blob Storage emulator (SharedKey auth checked, data on disk).
pub struct Azurite {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = find("azurite-blob", "azurite/node_modules/.bin/azurite-blob");
        let python = find("python", "venv/bin/python");
        let sdk = Command::new(&python)
            .args(["-c", "import azure.storage.blob"])
            .status();
        if !sdk.is_ok_and(|s| s.success()) {
            install_tools();
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("azurite.log");
        let child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            .args(["--silent", "--skipApiVersionCheck"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting azurite-blob");
        crate::reap_with_this_process(child.id(), None);
        wait_for_port(port, "azurite-blob", &log);
        Azurite {
            port,
            child,
            _dir: dir,
        }
    }

    /// The account URL (path-style, as Azurite serves it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// Create a container with the Azure SDK (object_store cannot).
    pub fn create_container(&self, name: &str) {
        let python = find("python", "venv/bin/python");
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
            self.endpoint()
        );
        let out = Command::new(python)
            .args(["-c", "import sys; from azure.storage.blob import BlobServiceClient as B; B.from_connection_string(sys.argv[1]).create_container(sys.argv[2])"])
            .args([&cs, name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating container {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Blob names in a container (through the Azure SDK, independent of coffer).
    pub fn blobs(&self, container: &str) -> Vec<String> {
        let python = find("python", "venv/bin/python");
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
            self.endpoint()
        );
        let out = Command::new(python)
            .args(["-c", "import sys; from azure.storage.blob import BlobServiceClient as B; [print(b.name) for b in B.from_connection_string(sys.argv[1]).get_container_client(sys.argv[2]).list_blobs()]"])
            .args([&cs, container])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fake-gcs-server: the GCS JSON API (resumable uploads, ranged reads) over plain HTTP, data
/// on disk, no authentication; a bucket is a directory of its root.
pub struct FakeGcs {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: Option<Child>,
}

impl FakeGcs {
    pub fn start() -> FakeGcs {
        let mut g = FakeGcs {
            port: free_port(),
            root: tempfile::tempdir().unwrap(),
            child: None,
        };
        g.restart();
        g
    }

    /// (Re)start on the same port and data (uploads in progress are lost, as on a crash).
    pub fn restart(&mut self) {
        let bin = find("fake-gcs-server", "bin/fake-gcs-server");
        let log = self.root.path().join("fake-gcs.log");
        let port = self.port;
        let child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(self.root.path().join("data"))
            .args([
                "-public-host",
                &format!("127.0.0.1:{port}"),
                "-log-level",
                "error",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting fake-gcs-server");
        crate::reap_with_this_process(child.id(), None);
        self.child = Some(child);
        wait_for_port(port, "fake-gcs-server", &log);
    }

    /// Kill -9, in the middle of whatever it was doing.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bucket, through the JSON API (independent of coffer).
    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let (status, _, _) = exchange(
            self.port,
            "POST",
            "/storage/v1/b?project=test",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert!(
            status == 200 || status == 201,
            "creating bucket {name}: {status}"
        );
    }

    /// Object names in a bucket, through the JSON API.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        let (status, body) =
            http_bytes(self.port, "GET", &format!("/storage/v1/b/{bucket}/o"), b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A service-account key for it: oauth off, the base URL in the key.
    pub fn key_json(&self) -> String {
        format!(
            "{{\"gcs_base_url\": \"{}\", \"disable_oauth\": true, \"client_email\": \"\", \"private_key\": \"\", \"private_key_id\": \"\"}}",
            self.endpoint()
        )
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.kill();
    }
}
