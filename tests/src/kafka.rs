//! A throwaway Apache Kafka 4.4 broker (KRaft, one node, broker and controller in one
//! process): its jars from Maven Central run with plain `java`, its own ports and data dir
//! on 127.0.0.1, stopped on drop. scripts/kafka.sh installs the jars and the Python client
//! the tests drive it with (tests/fixtures/kafka/tool.py).

use crate::{free_port, reap_with_this_process};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    crate::s3::tools_dir().join("kafka")
}

pub struct Broker {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

const LOG4J2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders><Console name="STDERR" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="STDERR"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
  </Loggers>
</Configuration>
"#;

fn jvm(cmd: &mut Command, log4j: &Path) {
    cmd.args([
        "-Xms128m",
        "-Xmx384m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
    ])
    .arg(format!(
        "-Dlog4j2.configurationFile=file:{}",
        log4j.display()
    ))
    .arg("-cp")
    .arg(format!("{}/lib/*", root().display()));
}

impl Broker {
    /// A new broker with an empty data dir, ready for clients (its own controller).
    pub fn start() -> Broker {
        Broker::start_node(1, free_port(), true, &cluster_id())
    }

    /// A cluster of two brokers, the first also its controller: partitions are led by
    /// both and groups coordinated by both.
    pub fn start_pair() -> (Broker, Broker) {
        let (id, controller) = (cluster_id(), free_port());
        let first = Broker::start_node(1, controller, true, &id);
        let second = Broker::start_node(2, controller, false, &id);
        (first, second)
    }

    /// Node `node` of cluster `id`, whose controller listens on `controller` (this node's
    /// own listener when it `controls`).
    fn start_node(node: u32, controller: u16, controls: bool, id: &str) -> Broker {
        crate::install_once("kafka.sh");
        let dir = tempfile::Builder::new()
            .prefix("coffer-kafka-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port();
        let data = dir.path().join("data");
        let (roles, listeners) = if controls {
            (
                "broker,controller",
                format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"),
            )
        } else {
            ("broker", format!("PLAINTEXT://127.0.0.1:{port}"))
        };
        let props = format!(
            "process.roles={roles}\nnode.id={node}\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners={listeners}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\nnum.partitions=1\nnum.network.threads=2\nnum.io.threads=2\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\nauto.create.topics.enable=true\n\
             log.segment.bytes=1048576\nlog.cleaner.backoff.ms=200\n",
            data.display()
        );
        let conf = dir.path().join("server.properties");
        std::fs::write(&conf, props).unwrap();
        let log4j = dir.path().join("log4j2.xml");
        std::fs::write(&log4j, LOG4J2).unwrap();
        let mut format = Command::new("java");
        jvm(&mut format, &log4j);
        let out = format
            .args(["kafka.tools.StorageTool", "format", "-t", id, "-c"])
            .arg(&conf)
            .output()
            .expect("running java (Kafka's StorageTool)");
        assert!(
            out.status.success(),
            "formatting the Kafka data dir failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut b = Broker {
            dir,
            port,
            child: None,
        };
        b.run(&conf, &log4j);
        b
    }

    fn run(&mut self, conf: &Path, log4j: &Path) {
        let log = self.dir.path().join("kafka.log");
        let mut cmd = Command::new("java");
        jvm(&mut cmd, log4j);
        let child = cmd
            .arg("kafka.Kafka")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("starting the Kafka broker");
        reap_with_this_process(child.id(), None);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Kafka Server started")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the Kafka broker exited ({s}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "the Kafka broker was not ready in 120 s: {text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Run the fixture tool (tests/fixtures/kafka/tool.py) against this broker; its JSON.
    pub fn tool(&self, args: &[&str]) -> serde_json::Value {
        let out = tool_command(&self.bootstrap(), args)
            .output()
            .expect("running tool.py");
        assert!(
            out.status.success(),
            "tool.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "tool.py {args:?}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Kill the broker at once (SIGKILL): a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        crate::servers::stop(&mut self.child);
    }
}

/// The fixture tool's command line, `tool.py CMD BOOTSTRAP ARGS...` (for a test that runs it
/// beside something else).
/// tool.py `args` against `bootstrap` on its own thread (a producer beside a backup); its
/// JSON output when joined (it must succeed).
pub fn spawn_tool(bootstrap: &str, args: &[&str]) -> std::thread::JoinHandle<serde_json::Value> {
    let mut cmd = tool_command(bootstrap, args);
    let what = format!("tool.py {args:?}");
    std::thread::spawn(move || {
        let out = cmd.output().expect("running tool.py");
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
    })
}

pub fn tool_command(bootstrap: &str, args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kafka/tool.py");
    let mut cmd = Command::new(root().join("venv/bin/python"));
    cmd.arg(&script)
        .arg(args[0])
        .arg(bootstrap)
        .args(&args[1..]);
    cmd
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cluster id as Kafka makes one: URL-safe base64 of 16 random bytes, no padding, none
/// with a '-' (it would look like an option).
fn cluster_id() -> String {
    loop {
        use base64::Engine;
        let mut b = [0u8; 16];
        random(&mut b);
        let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        if !s.contains('-') {
            return s;
        }
    }
}

fn random(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(b))
        .expect("reading /dev/urandom");
}
