#!/usr/bin/env bash
# Benchmark (not a test): the kafka plugin against kcat on the same broker and the same
# records in the same run, as ratios of medians, plus coffer's peak RSS.
#
#   bench/kafka.sh [MIB]     (default 1024: 1 GiB of 1 KiB records in 3 partitions)
#
# backup:  coffer backup                      vs  kcat -C -e -t bench | zstd -3 > file
# restore: coffer restore (into a new topic)  vs  zstd -dc file | kcat -P -t NEW
#
# kcat keeps only the values here (its default format); coffer keeps keys, headers,
# timestamps and the groups' offsets as well, so the comparison favours kcat.
# Needs: kcat and zstd (Debian), java 17, scripts/kafka.sh's broker jars.
# KAFKA_PLUGIN=path/to/kafka.wasm runs that build of the plugin instead of the built-in one
# (to compare two builds on the same machine).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
RUNS=${RUNS:-3}
command -v kcat >/dev/null || { echo "bench/kafka.sh: kcat is missing (apt-get install kcat)" >&2; exit 1; }
scripts/kafka.sh
KAFKA="${COFFER_TOOLS:-$HOME/.cache/coffer-tools}/kafka"
cargo build --release --quiet
COFFER="$PWD/target/release/coffer"
WORK=$(mktemp -d /tmp/coffer-kafka-bench.XXXXXX)
export COFFER_HOME="$WORK/home"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 2; rm -rf "$WORK"; }
trap cleanup EXIT
. bench/lib.sh

# ---- one broker (KRaft, broker and controller in one process), as tests/src/kafka.rs runs it
PORT=$(freeport); CPORT=$(freeport)
B=127.0.0.1:$PORT
cat > "$WORK/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://$B,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://$B
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$WORK/kafka
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=10485760
PROPS
cat > "$WORK/log4j2.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders><Console name="STDERR" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="STDERR"/></Root><Logger name="kafka.server.KafkaRaftServer" level="INFO"/></Loggers>
</Configuration>
XML
JVM=(java -Xms1g -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true "-Dlog4j2.configurationFile=file:$WORK/log4j2.xml" -cp "$KAFKA/lib/*")
ID=$(python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if "-" not in s: print(s); break')
"${JVM[@]}" kafka.tools.StorageTool format -t "$ID" -c "$WORK/server.properties" >/dev/null
"${JVM[@]}" kafka.Kafka "$WORK/server.properties" > "$WORK/kafka.log" 2>&1 & PIDS+=($!)
until grep -q "Kafka Server started" "$WORK/kafka.log" 2>/dev/null; do sleep 0.2; done

# ---- the records: MIB MiB of 1 KiB values (hex text: compressible about 2:1), keyed
RECORDS=$((MIB * 1024))
echo "producing $RECORDS records of 1 KiB into topic bench" >&2
"$KAFKA/venv/bin/python" - "$B" "$RECORDS" <<'PY'
import os, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
boot, n = sys.argv[1], int(sys.argv[2])
admin = AdminClient({"bootstrap.servers": boot})  # alive until the futures resolve
for f in admin.create_topics([NewTopic("bench", num_partitions=3, replication_factor=1)]).values():
    f.result()
p = Producer({"bootstrap.servers": boot, "linger.ms": 20, "batch.size": 1000000, "acks": "all"})
for i in range(n):
    while True:
        try:
            p.produce("bench", key=b"k%d" % i, value=os.urandom(512).hex().encode(), partition=i % 3)
            break
        except BufferError:
            p.poll(0.1)
    if i % 1000 == 0:
        p.poll(0)
assert p.flush(120) == 0
PY

PLUGIN="{builtin: kafka}"
[ -n "${KAFKA_PLUGIN:-}" ] && PLUGIN="{path: $KAFKA_PLUGIN}"
cat > "$WORK/wl.yaml" <<YAML
apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {name: kafka-bench}
spec:
  plugin: $PLUGIN
  grants: {net: ["$B"], location: [read, write, delete]}
  limits: {timeouts: {backup: 1h, restore: 1h}}
---
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {name: bench}
spec:
  blueprint: kafka-bench
  params:
    backup: {bootstrap: "$B", topics: [bench]}
    restore: {bootstrap: "$B"}
YAML
"$COFFER" apply -f "$WORK/wl.yaml" >/dev/null
last_rp() { "$COFFER" get restorepoints -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["metadata"]["name"])'; }
records() { kcat -C -b "$B" -t "$1" -e -q | wc -l; }
# both RUN NAME REF_CMD COF_CMD: time each once, the reference first on odd runs
both() {
  if [ $(($1 % 2)) = 1 ]; then
    measure bash -c "$3" >> "$WORK/$2.ref"; measure bash -c "$4" >> "$WORK/$2.cof"
  else
    measure bash -c "$4" >> "$WORK/$2.cof"; measure bash -c "$3" >> "$WORK/$2.ref"
  fi
}

: > "$WORK/backup.ref"; : > "$WORK/backup.cof"; : > "$WORK/restore.ref"; : > "$WORK/restore.cof"
for i in $(seq 1 "$RUNS"); do
  both "$i" backup "kcat -C -b $B -t bench -e -q | zstd -q -3 > $WORK/ref.zst" "$COFFER backup bench"
  RP=$(last_rp)
  both "$i" restore "zstd -dc $WORK/ref.zst | kcat -P -b $B -t ref-$i -X linger.ms=20 -X batch.size=1000000" \
    "$COFFER restore bench --from $RP -p 'topicMap={\"bench\": \"cof-$i\"}'"
  for t in "ref-$i" "cof-$i"; do
    got=$(records "$t")
    [ "$got" = "$RECORDS" ] || { echo "topic $t holds $got records, not $RECORDS" >&2; exit 1; }
  done
  "$COFFER" delete "$RP" >/dev/null
done

report() {
  local r c rss
  r=$(cut -d' ' -f1 "$WORK/$1.ref" | median); c=$(cut -d' ' -f1 "$WORK/$1.cof" | median)
  rss=$(cut -d' ' -f2 "$WORK/$1.cof" | sort -n | tail -1)
  printf '%-8s kcat %7.2fs  coffer %7.2fs  ratio %.2f  coffer peak RSS %d MiB\n' "$1" "$r" "$c" "$(python3 -c "print($c / $r)")" $((rss / 1024))
}
echo
echo "medians of $RUNS runs ($RECORDS records, $MIB MiB of values, 3 partitions)"
report backup
report restore
