//! A real Apache Cassandra 5.0.9 node (cassandra-all from Maven Central, plain `java` 17)
//! with real cassandra-medusa 0.31.0 beside it (its CLI with a local-storage medusa.ini),
//! on 127.0.0.1 with its own ports and directory; scripts/cassandra.sh installs them. One
//! node serves every test of a test process ([`Cassandra::shared`], about 50 s to start,
//! about 1 GB of RSS). Medusa's `restore-node` stops and starts the node itself through
//! the node's `bin/stop` and `bin/start`, so the node's pid lives in `run/cassandra.pid`,
//! and the reaper kills whatever pid is there when the test process ends.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    crate::s3::tools_dir().join("cassandra")
}

pub struct Cassandra {
    pub dir: tempfile::TempDir,
    pub cql: u16,
    pub jmx: u16,
}

/// The JVM options of Cassandra 5.0 on Java 17 (its conf/jvm17-server.options).
const SERVER_ARGS: &str = "-Djdk.attach.allowAttachSelf=true
--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports java.sql/java.sql=ALL-UNNAMED
--add-exports java.base/java.lang.ref=ALL-UNNAMED
--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens java.base/java.lang.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens java.base/jdk.internal.math=ALL-UNNAMED
--add-opens java.base/jdk.internal.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens java.base/sun.nio.ch=ALL-UNNAMED
--add-opens java.base/java.io=ALL-UNNAMED
--add-opens java.base/java.lang.reflect=ALL-UNNAMED
--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens java.base/java.lang=ALL-UNNAMED
--add-opens java.base/java.util=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
";

/// nodetool's (conf/jvm17-clients.options).
const CLIENT_ARGS: &str = "-Djdk.attach.allowAttachSelf=true
--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports java.base/jdk.internal.ref=ALL-UNNAMED
--add-exports java.base/sun.nio.ch=ALL-UNNAMED
--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports java.sql/java.sql=ALL-UNNAMED
--add-opens java.base/java.lang.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens java.base/jdk.internal.math=ALL-UNNAMED
--add-opens java.base/jdk.internal.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
";

// logback 1.5: `%date{HH:mm:ss,SSS}` breaks it (the comma starts a time zone).
const LOGBACK: &str = r#"<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"#;

const LOGBACK_TOOLS: &str = r#"<configuration scan="false"><appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender"><target>System.err</target>
<encoder><pattern>%-5level %msg%n</pattern></encoder></appender>
<root level="WARN"><appender-ref ref="STDERR"/></root></configuration>
"#;

impl Cassandra {
    /// The node every test of this process shares, started on first use.
    pub fn shared() -> &'static Cassandra {
        static NODE: OnceLock<Cassandra> = OnceLock::new();
        NODE.get_or_init(Cassandra::start)
    }

    fn start() -> Cassandra {
        crate::install_once("cassandra.sh");
        let dir = tempfile::Builder::new()
            .prefix("coffer-cassandra-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let (cql, storage, jmx) = (free_port(), free_port(), free_port());
        for sub in ["conf", "data", "logs", "run", "tmp", "backups", "bin"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let lib = root().join("lib");
        std::fs::write(d.join("conf/jvm17-server.args"), SERVER_ARGS).unwrap();
        std::fs::write(d.join("conf/jvm17-clients.args"), CLIENT_ARGS).unwrap();
        std::fs::write(d.join("conf/logback.xml"), LOGBACK).unwrap();
        std::fs::write(d.join("conf/logback-tools.xml"), LOGBACK_TOOLS).unwrap();
        std::fs::write(
            d.join("conf/cassandra.yaml"),
            cassandra_yaml(d, cql, storage),
        )
        .unwrap();
        let jamm = std::fs::read_dir(&lib)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("jamm-"))
            })
            .expect("the jamm jar in Cassandra's lib");
        let (dd, ld) = (d.display(), lib.display());
        // The start command must return with the node up and its output elsewhere: Medusa
        // runs it and waits for every holder of its stdout. The node runs in its own
        // session with a clean environment, as a service manager starts it (a restore
        // restarts the node from inside the medusa that coffer runs, and what a command
        // leaves behind with coffer's marks is stopped with it).
        script(
            &d.join("bin/start"),
            &format!(
                r#"if [ -e {dd}/run/fail-next-start ]; then
  rm -f {dd}/run/fail-next-start; echo "start refused once (the test's fail-next-start)" >&2; exit 1
fi
pid=$(cat {dd}/run/cassandra.pid 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then exit 0; fi
env -i PATH="$PATH" HOME="${{HOME:-/root}}" setsid nohup java -Xms512m -Xmx512m -Xss256k -XX:+UseG1GC -XX:+UseTLAB -XX:+ResizeTLAB \
  -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError -Djava.net.preferIPv4Stack=true \
  @{dd}/conf/jvm17-server.args -javaagent:{jamm} \
  -Dcassandra.config=file://{dd}/conf/cassandra.yaml -Dcassandra.storagedir={dd}/data \
  -Dcassandra.logdir={dd}/logs -Dlogback.configurationFile=file://{dd}/conf/logback.xml \
  -Dcassandra.jmx.local.port={jmx} -Djava.rmi.server.hostname=127.0.0.1 \
  -Dcassandra-foreground=yes -Dcassandra.skip_wait_for_gossip_to_settle=0 \
  -Djava.io.tmpdir={dd}/tmp -Djna.tmpdir={dd}/tmp \
  -cp "{dd}/conf:{ld}/*" org.apache.cassandra.service.CassandraDaemon \
  >>{dd}/logs/stdout.log 2>&1 </dev/null &
echo $! > {dd}/run/cassandra.pid
for i in $(seq 1 480); do
  (exec 3<>/dev/tcp/127.0.0.1/{cql}) 2>/dev/null && exit 0
  kill -0 $! 2>/dev/null || {{ tail -n 30 {dd}/logs/stdout.log >&2; exit 1; }}
  sleep 0.5
done
echo "Cassandra was not ready in 240 s" >&2; exit 1
"#,
                jamm = jamm.display()
            ),
        );
        script(
            &d.join("bin/stop"),
            &format!(
                r#"pid=$(cat {dd}/run/cassandra.pid 2>/dev/null)
[ -n "$pid" ] || exit 0
kill -TERM "$pid" 2>/dev/null || exit 0
for i in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.5; done
kill -KILL "$pid" 2>/dev/null; exit 0
"#
            ),
        );
        // nodetool as Medusa calls it (-D options go to the JVM).
        script(
            &d.join("bin/nodetool"),
            &format!(
                r#"jvm=(); args=()
for a in "$@"; do case "$a" in -D*) jvm+=("$a");; *) args+=("$a");; esac; done
exec java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 @{dd}/conf/jvm17-clients.args \
  -Dcassandra.storagedir={dd}/data -Dlogback.configurationFile=file://{dd}/conf/logback-tools.xml \
  "${{jvm[@]}}" -cp "{dd}/conf:{ld}/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p {jmx} "${{args[@]}}"
"#
            ),
        );
        std::fs::write(d.join("medusa.ini"), medusa_ini(d, jmx)).unwrap();
        let started = Command::new(d.join("bin/start"))
            .output()
            .expect("starting Cassandra");
        assert!(
            started.status.success(),
            "Cassandra did not start: {}{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr)
        );
        reap_pidfile(&d.join("run/cassandra.pid"), d);
        Cassandra { dir, cql, jmx }
    }

    /// The node's medusa.ini (local storage in `backups/`).
    pub fn medusa_ini(&self) -> PathBuf {
        self.dir.path().join("medusa.ini")
    }

    /// The medusa executable of the tests' venv.
    pub fn medusa_bin() -> PathBuf {
        root().join("venv-medusa/bin/medusa")
    }

    /// `medusa --config-file medusa.ini ARGS`.
    pub fn medusa(&self, args: &[&str]) -> Output {
        Command::new(Cassandra::medusa_bin())
            .arg("--config-file")
            .arg(self.medusa_ini())
            .args(args)
            .current_dir(self.dir.path().join("tmp"))
            .output()
            .expect("running medusa")
    }

    /// Run CQL statements with cqlsh; its output (the version warning left out).
    pub fn cql(&self, statements: &str) -> String {
        let out = Command::new(root().join("venv-cqlsh/bin/cqlsh"))
            .args(["127.0.0.1", &self.cql.to_string(), "-e", statements])
            .output()
            .expect("running cqlsh");
        assert!(
            out.status.success(),
            "cqlsh {statements:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("cqlsh was built against"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every row of `table` (columns `id int`, `note text`), sorted: `id|note` lines.
    pub fn rows(&self, table: &str) -> Vec<String> {
        let out = self.cql(&format!("SELECT id, note FROM {table}"));
        let mut rows: Vec<String> = out
            .lines()
            .filter_map(|l| {
                let (id, note) = l.split_once('|')?;
                let id: u32 = id.trim().parse().ok()?;
                Some(format!("{id}|{}", note.trim()))
            })
            .collect();
        rows.sort();
        rows
    }

    /// Insert rows `ids` into `table` (`id int`, `note text`) in one batch, each note of
    /// its own length and with a non-ASCII character.
    pub fn insert(&self, table: &str, ids: std::ops::Range<u32>) {
        let mut cql = String::from("BEGIN UNLOGGED BATCH ");
        for id in ids {
            cql.push_str(&format!(
                "INSERT INTO {table} (id, note) VALUES ({id}, 'order {id} ✓ {}'); ",
                "x".repeat(id as usize % 23)
            ));
        }
        cql.push_str("APPLY BATCH;");
        self.cql(&cql);
    }

    /// `SELECT count(*)` of `table`.
    pub fn count(&self, table: &str) -> u64 {
        let out = self.cql(&format!("SELECT count(*) FROM {table}"));
        out.lines()
            .filter_map(|l| l.trim().parse().ok())
            .next()
            .unwrap_or_else(|| panic!("no count in {out:?}"))
    }

    /// Stop the node (its `bin/stop`: SIGTERM, Cassandra drains).
    pub fn stop(&self) {
        self.script("stop");
    }

    /// Start the node again and wait until it answers CQL.
    pub fn start_again(&self) {
        self.script("start");
    }

    /// Start the node if it is down, as a pod's container is restarted: whether it runs.
    pub fn restart_if_down(&self) -> bool {
        self.up()
            || Command::new(self.dir.path().join("bin/start"))
                .output()
                .is_ok_and(|o| o.status.success())
    }

    /// Make the node's next start (by Medusa after a restore, say) fail once.
    pub fn fail_next_start(&self) {
        std::fs::write(self.dir.path().join("run/fail-next-start"), "").unwrap();
    }

    fn script(&self, name: &str) {
        let out = Command::new(self.dir.path().join("bin").join(name))
            .output()
            .unwrap_or_else(|e| panic!("running bin/{name}: {e}"));
        assert!(
            out.status.success(),
            "bin/{name} of the Cassandra node: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The directory medusa's venv keeps its executables in (a Workload's PATH entry).
    pub fn medusa_path() -> PathBuf {
        root().join("venv-medusa/bin")
    }

    /// The end of medusa's own log (every medusa run against this node, coffer's too).
    pub fn medusa_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("logs/medusa.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("] DEBUG: ")).collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Whether the node answers CQL.
    pub fn up(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.cql)).is_ok()
    }
}

fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/usr/bin/env bash\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Kill the pid in `pidfile` (when it is still a java of `dir`) and remove `dir` when this
/// test process ends: the node outlives a restart by Medusa under a new pid.
fn reap_pidfile(pidfile: &Path, dir: &Path) {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=$(cat "$2" 2>/dev/null)
[ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$3" && kill -9 "$pid"
rm -rf "$3"
exit 0"#;
    let spawned = Command::new("setsid")
        .args(["-f", "sh", "-c", script, "reaper"])
        .arg(std::process::id().to_string())
        .arg(pidfile)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(e) = spawned {
        eprintln!(
            "warning: no reaper for the Cassandra node in {}: {e}",
            dir.display()
        );
    }
}

fn cassandra_yaml(d: &Path, cql: u16, storage: u16) -> String {
    let d = d.display();
    format!(
        "cluster_name: 'coffer-test'
num_tokens: 1
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1:{storage}\"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage}
native_transport_port: {cql}
start_native_transport: true
data_file_directories:
  - {d}/data/data
commitlog_directory: {d}/data/commitlog
saved_caches_directory: {d}/data/saved_caches
hints_directory: {d}/data/hints
cdc_raw_directory: {d}/data/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
commitlog_total_space: 128MiB
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
counter_cache_size: 0MiB
file_cache_size: 32MiB
networking_cache_size: 16MiB
prepared_statements_cache_size: 8MiB
index_summary_capacity: 8MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_compactors: 1
incremental_backups: false
snapshot_before_compaction: false
auto_snapshot: false
"
    )
}

fn medusa_ini(d: &Path, jmx: u16) -> String {
    let d = d.display();
    format!(
        "[cassandra]
config_file = {d}/conf/cassandra.yaml
start_cmd = {d}/bin/start
stop_cmd = {d}/bin/stop
nodetool_executable = {d}/bin/nodetool
nodetool_host = 127.0.0.1
nodetool_port = {jmx}
nodetool_flags = -Dcom.sun.jndi.rmiURLParsing=legacy
check_running = {d}/bin/nodetool version
is_ccm = 0
use_sudo = False
resolve_ip_addresses = False

[storage]
storage_provider = local
base_path = {d}/backups
bucket_name = medusa
fqdn = 127.0.0.1
use_sudo_for_restore = False
max_backup_age = 0
max_backup_count = 0
backup_grace_period_in_days = 0
concurrent_transfers = 1

[monitoring]
monitoring_provider = None

[checks]
health_check = cql

[logging]
enabled = True
file = {d}/logs/medusa.log
level = DEBUG

[grpc]
enabled = False

[kubernetes]
enabled = False
"
    )
}
