#!/usr/bin/env bash
# Benchmark (not a test): coffer's postgres-logical backup and restore against the plain tools
# on the same pgbench database in the same run, as ratios, plus coffer's peak RSS.
#
#   bench/pg.sh [SCALE]      (default scale 50, about 750 MB of table data)
#
# Backup:  coffer backup            vs  pg_dump -Fc | zstd > file
# Restore: coffer restore (new db)  vs  zstd -dc file | pg_restore -d newdb
# Each is run RUNS times (default 3), alternating, and the medians are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SCALE=${1:-50}
RUNS=${RUNS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

cargo build --release --quiet
COFFER="$PWD/target/release/coffer"

WORK=$(mktemp -d /tmp/coffer-bench.XXXXXX)
export COFFER_HOME="$WORK/home"
AS=()
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$WORK"; AS=(runuser -u postgres --); fi
cleanup() { "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(freeport)
"${AS[@]}" "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust --no-sync --no-instructions -E UTF8 --locale=C.UTF-8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -t 60 \
  -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=256MB" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
createdb bench
echo "pgbench -i -s $SCALE ..."
"$PGBIN/pgbench" -i -q -s "$SCALE" bench >/dev/null 2>&1
echo "database size: $(psql -AtX -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))")"

cat > "$WORK/wl.yaml" <<EOF
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {name: bench}
spec:
  blueprint: postgres-logical
  env: {PGHOST: 127.0.0.1, PGPORT: "$PORT", PGUSER: postgres}
  params:
    backup: {databases: [bench], globals: false}
EOF
"$COFFER" apply -f "$WORK/wl.yaml" >/dev/null

ref_dump() { "$PGBIN/pg_dump" -Fc -d bench | zstd -q -3 > "$WORK/ref.pgdump.zst"; }
ref_restore() {
  psql -qX -c "CREATE DATABASE ref_restore TEMPLATE template0"
  zstd -dc "$WORK/ref.pgdump.zst" | "$PGBIN/pg_restore" --exit-on-error -d ref_restore
}

: > "$WORK/ref_b"; : > "$WORK/cof_b"; : > "$WORK/cof_rss"; : > "$WORK/ref_r"; : > "$WORK/cof_r"; : > "$WORK/cof_rrss"
# Each measurement starts from the same state: the previous one's restored database dropped
# and a checkpoint taken, so no run pays for the one before. The order alternates.
settle() { psql -qX -c "DROP DATABASE IF EXISTS ref_restore" -c "DROP DATABASE IF EXISTS coffer_restore" -c "CHECKPOINT"; sync; }
export -f ref_dump ref_restore; export WORK PGBIN
ref_backup_run() { settle; read -r t _ < <(measure bash -c ref_dump); echo "$t" >> "$WORK/ref_b"; }
cof_backup_run() {
  settle; read -r t rss < <(measure "$COFFER" backup bench); echo "$t" >> "$WORK/cof_b"; echo "$rss" >> "$WORK/cof_rss"
  RP=$("$COFFER" get restorepoints -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["metadata"]["name"])')
}
ref_restore_run() { settle; read -r t _ < <(measure bash -c ref_restore); echo "$t" >> "$WORK/ref_r"; }
cof_restore_run() {
  settle; read -r t rss < <(measure "$COFFER" restore bench --from "$RP" -p targetDatabase=coffer_restore -p globals=false)
  echo "$t" >> "$WORK/cof_r"; echo "$rss" >> "$WORK/cof_rrss"
}
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then
    ref_backup_run; cof_backup_run; ref_restore_run; cof_restore_run
  else
    cof_backup_run; ref_backup_run; cof_restore_run; ref_restore_run
  fi
  echo "run $i: backup ref $(tail -1 "$WORK/ref_b")s coffer $(tail -1 "$WORK/cof_b")s; restore ref $(tail -1 "$WORK/ref_r")s coffer $(tail -1 "$WORK/cof_r")s"
done

REF_B=$(median < "$WORK/ref_b"); COF_B=$(median < "$WORK/cof_b")
REF_R=$(median < "$WORK/ref_r"); COF_R=$(median < "$WORK/cof_r")
RSS_B=$(sort -n "$WORK/cof_rss" | tail -1); RSS_R=$(sort -n "$WORK/cof_rrss" | tail -1)
REF_SIZE=$(stat -c %s "$WORK/ref.pgdump.zst")
COF_SIZE=$("$COFFER" get restorepoints -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["spec"]["storedSize"])')
echo
echo "pgbench scale $SCALE, medians of $RUNS runs"
printf "backup:  pg_dump -Fc | zstd  %6.2fs   coffer %6.2fs   ratio %.2f\n" "$REF_B" "$COF_B" "$(python3 -c "print($COF_B / $REF_B)")"
printf "restore: zstd -d | pg_restore %6.2fs   coffer %6.2fs   ratio %.2f\n" "$REF_R" "$COF_R" "$(python3 -c "print($COF_R / $REF_R)")"
printf "stored size: reference %d bytes, coffer %d bytes\n" "$REF_SIZE" "$COF_SIZE"
printf "coffer peak RSS: backup %d MiB, restore %d MiB\n" $((RSS_B / 1024)) $((RSS_R / 1024))
