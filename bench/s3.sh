#!/usr/bin/env bash
# Benchmark (not a test): upload the same dump to the same s3s-fs server with
#   coffer   (zstd -3, age encryption, sha256, multipart; through the `hostile` test plugin
#             in mode=file, i.e. `cat dump` inside the sandbox -> host data path)
#   rclone rcat  (raw bytes, no compression, no encryption)
#   restic backup --stdin  (chunked, deduplicated, compressed, encrypted)
# Wall time (median of RUNS, order rotating each round) and peak RSS of each.
#
#   bench/s3.sh [BYTES]     (default 1073741824 = 1 GiB; RUNS=3; DATA=random for
#                            incompressible bytes instead of a dump)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SIZE=${1:-1073741824}
RUNS=${RUNS:-3}
for t in rclone restic age-keygen; do
  command -v $t >/dev/null || { echo "needs $t: apt-get install -y rclone restic age" >&2; exit 1; }
done
scripts/test-servers.sh
TOOLS="${COFFER_TOOLS:-$HOME/.cache/coffer-tools}"
cargo build --release --quiet
cargo test --release --quiet -p coffer-tests --no-run 2>/dev/null   # builds the test plugins
COFFER="$PWD/target/release/coffer"
PLUGIN="$PWD/target/wasm-test-plugins/wasm32-wasip2/release/hostile.wasm"
WORK=$(mktemp -d /var/tmp/coffer-s3bench.XXXXXX)
S3PID=
trap '[ -n "$S3PID" ] && kill $S3PID 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(freeport)
mkdir -p "$WORK/s3" "$WORK/s3/coffer" "$WORK/s3/rclone" "$WORK/s3/restic"
"$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$PORT" --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
S3PID=$!
sleep 0.5

# A dump-like file: pgbench_accounts rows (ids, balances, a blank-padded filler), as
# `pg_dump` writes them in COPY format.
echo "writing $SIZE bytes of ${DATA:-dump} data" >&2
if [ "${DATA:-dump}" = random ]; then
  head -c "$SIZE" /dev/urandom > "$WORK/dump.sql"
else
awk -v n="$SIZE" 'BEGIN { srand(7); fill = sprintf("%84s", ""); while (b < n) {
  line = sprintf("%d\t%d\t%d\t%s\n", ++i, 1 + int(i / 100000), int(rand() * 200000) - 100000, fill);
  printf "%s", line; b += length(line) } }' | head -c "$SIZE" > "$WORK/dump.sql"
fi

age-keygen -o "$WORK/age.key" 2>/dev/null
RECIPIENT=$(grep -o 'age1[0-9a-z]*' "$WORK/age.key" | head -1)
echo bench > "$WORK/ak"; echo bench-secret > "$WORK/sk"
export COFFER_HOME="$WORK/home"
cat > "$WORK/setup.yaml" <<YAML
apiVersion: coffer.dev/v1alpha1
kind: Profile
metadata: {name: s3s}
spec:
  type: s3
  bucket: coffer
  endpoint: http://127.0.0.1:$PORT
  credentials: {accessKeyId: {file: $WORK/ak}, secretAccessKey: {file: $WORK/sk}}
  encryption: {recipients: [$RECIPIENT], identity: {file: $WORK/age.key}}
---
apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {name: mover}
spec:
  plugin: {path: $PLUGIN}
  grants: {exec: ["cat **"], unsafeArgs: true, location: [read, write, delete]}
---
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {name: dump}
spec: {blueprint: mover, profile: s3s}
YAML
"$COFFER" apply -f "$WORK/setup.yaml" >/dev/null

export RCLONE_CONFIG_S3S_TYPE=s3 RCLONE_CONFIG_S3S_PROVIDER=Other \
  RCLONE_CONFIG_S3S_ENDPOINT="http://127.0.0.1:$PORT" RCLONE_CONFIG_S3S_ACCESS_KEY_ID=bench \
  RCLONE_CONFIG_S3S_SECRET_ACCESS_KEY=bench-secret RCLONE_CONFIG_S3S_FORCE_PATH_STYLE=true
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret RESTIC_PASSWORD=bench
# rclone 1.60 cannot use a custom CA bundle with its transport; the endpoint is plain http.
unset AWS_CA_BUNDLE

# Run a command under GNU time; append "seconds KiB" to $WORK/<name>.
measure_time() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" >/dev/null 2>"$WORK/$name.err" || {
    echo "$name failed:" >&2; cat "$WORK/$name.err" >&2; exit 1; }
  cat "$WORK/t" >> "$WORK/$name"
}
run_coffer() { measure_time coffer "$COFFER" backup dump -p mode=file -p path="$WORK/dump.sql"; }
run_rclone() { measure_time rclone sh -c "rclone rcat s3s:rclone/dump-$1.sql < '$WORK/dump.sql'"; }
run_restic() {
  restic -r "s3:http://127.0.0.1:$PORT/restic/r$1" init >/dev/null 2>&1
  measure_time restic sh -c "restic -r s3:http://127.0.0.1:$PORT/restic/r$1 backup --stdin --stdin-filename dump.sql < '$WORK/dump.sql'"
}
for i in $(seq 1 "$RUNS"); do
  case $((i % 3)) in
    1) run_coffer; run_rclone "$i"; run_restic "$i" ;;
    2) run_rclone "$i"; run_restic "$i"; run_coffer ;;
    0) run_restic "$i"; run_coffer; run_rclone "$i" ;;
  esac
  echo "round $i done" >&2
done

stored() { du -sb "$WORK/s3/$1" | cut -f1; }
C=$(cut -d' ' -f1 "$WORK/coffer" | median); R=$(cut -d' ' -f1 "$WORK/rclone" | median); T=$(cut -d' ' -f1 "$WORK/restic" | median)
CM=$(cut -d' ' -f2 "$WORK/coffer" | sort -n | tail -1); RM=$(cut -d' ' -f2 "$WORK/rclone" | sort -n | tail -1); TM=$(cut -d' ' -f2 "$WORK/restic" | sort -n | tail -1)
printf 'upload of %s bytes to s3s-fs, median of %s runs:\n' "$SIZE" "$RUNS"
printf '  coffer (zstd+age)  %6.2f s  peak RSS %4d MiB  stored %s bytes/run\n' "$C" $((CM / 1024)) $(( $(stored coffer) / RUNS ))
printf '  rclone rcat        %6.2f s  peak RSS %4d MiB  stored %s bytes/run\n' "$R" $((RM / 1024)) $(( $(stored rclone) / RUNS ))
printf '  restic --stdin     %6.2f s  peak RSS %4d MiB  stored %s bytes/run\n' "$T" $((TM / 1024)) $(( $(stored restic) / RUNS ))
awk -v c="$C" -v r="$R" -v t="$T" 'BEGIN { printf "  ratio coffer/rclone %.2f, coffer/restic %.2f\n", c / r, c / t }'
