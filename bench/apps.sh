#!/usr/bin/env bash
# Benchmark (not a test): the mysql-logical, redis and etcd plugins against the plain tools
# on the same data in the same run, as ratios of medians, plus coffer's peak RSS.
#
#   bench/apps.sh [ROWS]     (default 2000000 MariaDB rows, ~1M Redis keys, 50k etcd keys)
#
# MariaDB backup:  coffer backup  vs  mariadb-dump --single-transaction ... | zstd -3 > file
# MariaDB restore: coffer restore vs  zstd -dc file | mariadb db
# Redis backup:    coffer backup  vs  redis-cli --rdb - | zstd -3 > file
# etcd backup:     coffer backup  vs  etcdctl snapshot save f && zstd -3 f
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
RUNS=${RUNS:-3}
cargo build --release --quiet
COFFER="$PWD/target/release/coffer"
WORK=$(mktemp -d /tmp/coffer-apps-bench.XXXXXX)
chmod 755 "$WORK"   # the mysql user must reach its data dir inside
export COFFER_HOME="$WORK/home"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$WORK"; }
trap cleanup EXIT
. bench/lib.sh
last_rp() { "$COFFER" get restorepoints -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["metadata"]["name"])'; }
# compare NAME: median of $WORK/NAME.ref vs $WORK/NAME.cof
report() {
  local r c rss
  r=$(cut -d' ' -f1 "$WORK/$1.ref" | median); c=$(cut -d' ' -f1 "$WORK/$1.cof" | median)
  rss=$(cut -d' ' -f2 "$WORK/$1.cof" | sort -n | tail -1)
  printf '%-16s reference %7.2fs  coffer %7.2fs  ratio %.2f  coffer peak RSS %d MiB\n' "$1" "$r" "$c" "$(python3 -c "print($c / $r)")" $((rss / 1024))
}
# run NAME REF_CMD COF_CMD: RUNS rounds, alternating order
run() {
  local name=$1 ref=$2 cof=$3
  : > "$WORK/$name.ref"; : > "$WORK/$name.cof"
  for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then
      measure bash -c "$ref" >> "$WORK/$name.ref"; measure bash -c "$cof" >> "$WORK/$name.cof"
    else
      measure bash -c "$cof" >> "$WORK/$name.cof"; measure bash -c "$ref" >> "$WORK/$name.ref"
    fi
  done
}
export COFFER WORK

# ---- MariaDB
M=$WORK/maria; mkdir -p "$M"; chown mysql:mysql "$M" 2>/dev/null || true
MPORT=$(freeport)
USERARG=(); [ "$(id -u)" = 0 ] && USERARG=(--user=mysql)
mariadb-install-db --no-defaults --datadir="$M/data" "${USERARG[@]}" --auth-root-authentication-method=normal --skip-test-db >/dev/null 2>&1
mariadbd --no-defaults --datadir="$M/data" "${USERARG[@]}" --port="$MPORT" --bind-address=127.0.0.1 --socket="$M/sock" \
  --pid-file="$M/pid" --log-error="$M/err.log" --skip-name-resolve --innodb-buffer-pool-size=512M >/dev/null 2>&1 & PIDS+=($!)
until mariadb-admin --no-defaults -h127.0.0.1 -P"$MPORT" -uroot ping >/dev/null 2>&1; do sleep 0.1; done
export MYSQL="mariadb --no-defaults -h127.0.0.1 -P$MPORT -uroot"
echo "loading $ROWS rows into MariaDB" >&2
$MYSQL -e "CREATE DATABASE bench; CREATE TABLE bench.accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler CHAR(84)) ENGINE=InnoDB;
  USE bench; INSERT INTO accounts SELECT seq, seq DIV 100000, 0, '' FROM seq_1_to_$ROWS;"
cat > "$WORK/wl.yaml" <<YAML
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {name: maria}
spec:
  blueprint: mysql-logical
  params:
    backup: {host: 127.0.0.1, port: $MPORT, user: root, databases: [bench]}
    restore: {host: 127.0.0.1, port: $MPORT, user: root}
YAML
"$COFFER" apply -f "$WORK/wl.yaml" >/dev/null
export MPORT
run mysql-backup \
  "mariadb-dump --no-defaults -h127.0.0.1 -P$MPORT -uroot --single-transaction --routines --triggers --events --hex-blob bench | zstd -q -3 > $WORK/ref.sql.zst" \
  "$COFFER backup maria"
RP=$(last_rp)
run mysql-restore \
  "$MYSQL -e 'DROP DATABASE IF EXISTS ref_r; CREATE DATABASE ref_r' && zstd -dc $WORK/ref.sql.zst | $MYSQL ref_r" \
  "$COFFER restore maria --from $RP -p targetDatabase=cof_r -p databases='[\"bench\"]'"
[ "$($MYSQL -N -e 'CHECKSUM TABLE cof_r.accounts' | cut -f2)" = "$($MYSQL -N -e 'CHECKSUM TABLE bench.accounts' | cut -f2)" ] || { echo "restored table differs" >&2; exit 1; }

# ---- Redis
RPORT=$(freeport); mkdir -p "$WORK/redis"
redis-server --port "$RPORT" --dir "$WORK/redis" --save "" --appendonly no --repl-diskless-sync-delay 0 \
  --enable-debug-command yes >/dev/null 2>&1 & PIDS+=($!)
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.05; done
KEYS=$((ROWS / 2))
echo "loading $KEYS keys into Redis" >&2
redis-cli -p "$RPORT" DEBUG POPULATE "$KEYS" key 64 >/dev/null
[ "$(redis-cli -p "$RPORT" DBSIZE)" = "$KEYS" ] || { echo "Redis has $(redis-cli -p "$RPORT" DBSIZE) keys, not $KEYS" >&2; exit 1; }
printf 'apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: cache}\nspec: {blueprint: redis, params: {backup: {port: %s}}}\n' "$RPORT" | "$COFFER" apply -f - >/dev/null
run redis-backup "redis-cli -p $RPORT --rdb - 2>/dev/null | zstd -q -3 > $WORK/ref.rdb.zst" "$COFFER backup cache"

# ---- etcd
EPORT=$(freeport); PPORT=$(freeport)
etcd --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$EPORT" --advertise-client-urls "http://127.0.0.1:$EPORT" \
  --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
  --initial-cluster "default=http://127.0.0.1:$PPORT" --quota-backend-bytes=4294967296 >/dev/null 2>&1 & PIDS+=($!)
until ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$EPORT" endpoint health >/dev/null 2>&1; do sleep 0.1; done
echo "loading 50000 keys of 2 KB into etcd" >&2
for b in $(seq 0 499); do
  { echo; for i in $(seq 0 99); do echo "put /bench/k$((b * 100 + i)) value-$((b * 100 + i))-$(printf '%02000d' 0)"; done; echo; echo; } \
    | ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$EPORT" txn >/dev/null
done
printf 'apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {name: kv}\nspec: {blueprint: etcd, params: {backup: {endpoint: "127.0.0.1:%s"}}}\n' "$EPORT" | "$COFFER" apply -f - >/dev/null
run etcd-backup \
  "rm -f $WORK/snap.db $WORK/snap.db.zst; ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$EPORT snapshot save $WORK/snap.db && zstd -q -3 $WORK/snap.db -o $WORK/snap.db.zst" \
  "$COFFER backup kv"

echo
echo "medians of $RUNS runs ($ROWS MariaDB rows, $KEYS Redis keys, 50000 etcd keys of 2 KB)"
for n in mysql-backup mysql-restore redis-backup etcd-backup; do report "$n"; done
