#!/usr/bin/env bash
# The main job on the embedded default (local mode), end to end:
#   build coffer, start a throwaway PostgreSQL with a password, fill a database, back it up
#   through the postgres-logical plugin, break the data, restore it, and check every row.
# Everything lives in a temp dir that is removed at the end (set KEEP=1 to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PGBIN:-}" ] && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  # PostgreSQL 15 (server and client) and the rest the tests use, from Debian.
  scripts/test-packages.sh
fi
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "PostgreSQL server binaries not found; install them (apt-get install postgresql-15) or set PGBIN" >&2
  exit 1
fi

echo "==> building coffer (first build: a few minutes)"
cargo build --release --quiet
COFFER="$PWD/target/release/coffer"

WORK=$(mktemp -d /tmp/coffer-quickstart.XXXXXX)
export COFFER_HOME="$WORK/home"
PGDATA="$WORK/pg"
AS=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root.
  chown postgres:postgres "$WORK"
  AS=(runuser -u postgres --)
fi
cleanup() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
PASSWORD="quickstart-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$PASSWORD" > "$WORK/pg.pass"
[ ${#AS[@]} -gt 0 ] && chown postgres:postgres "$WORK/pg.pass"

echo "==> starting a throwaway PostgreSQL on 127.0.0.1:$PORT"
"${AS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  --pwfile="$WORK/pg.pass" --no-sync --no-instructions -E UTF8 --locale=C.UTF-8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -w -t 60 \
  -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null

export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGPASSWORD=$PASSWORD
psql -qX -c "CREATE DATABASE shop"
psql -qX -d shop -c "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, total numeric(10,2));
  INSERT INTO orders (customer, total) SELECT 'customer ' || g, g * 1.5 FROM generate_series(1, 100000) g;"
checksum() { psql -AtqX -d shop -c "SELECT count(*) || ' rows, md5 ' || md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o"; }
BEFORE=$(checksum)
echo "    shop.orders: $BEFORE"
unset PGPASSWORD # coffer reads the password from the Workload's secret file, never from us

echo "==> coffer apply: a Workload protected by the built-in postgres-logical Blueprint"
cat > "$WORK/workload.yaml" <<EOF
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {name: shop-db}
spec:
  blueprint: postgres-logical
  env: {PGHOST: 127.0.0.1, PGPORT: "$PORT", PGUSER: postgres}
  secrets:
    password: {file: $WORK/pg.pass}
EOF
"$COFFER" apply -f "$WORK/workload.yaml"

echo "==> coffer backup shop-db"
"$COFFER" backup shop-db
"$COFFER" get restorepoints
RP=$("$COFFER" get restorepoints -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["metadata"]["name"])')

echo "==> breaking the data"
PGPASSWORD=$PASSWORD psql -qX -d shop -c "DELETE FROM orders WHERE id % 3 = 0; UPDATE orders SET total = 0"
echo "    shop.orders: $(PGPASSWORD=$PASSWORD checksum)"

echo "==> coffer restore shop-db --from $RP"
"$COFFER" restore shop-db --from "$RP"
AFTER=$(PGPASSWORD=$PASSWORD checksum)
echo "    shop.orders: $AFTER"

"$COFFER" get actionsets
if [ "$BEFORE" = "$AFTER" ]; then
  echo "==> OK: every row is back"
else
  echo "==> FAILED: restored data differs" >&2
  exit 1
fi
