#!/usr/bin/env bash
# Benchmark (not a test): coffer's memory stays bounded whatever the stream's size.
# Backs up SIZE bytes of /dev/urandom (incompressible) through the host's data path
# (process stdout -> zstd -> sha256 -> multipart upload to the file location) with the test
# plugin `hostile` (mode=stream), and compares with `head | zstd | sha256sum` on the same bytes.
#
#   bench/stream.sh [SIZE]     (default 4294967296 = 4 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-4294967296}
cargo build --release --quiet
cargo test --release --quiet -p coffer-tests --no-run 2>/dev/null   # builds the test plugins
COFFER="$PWD/target/release/coffer"
PLUGIN="$PWD/target/wasm-test-plugins/wasm32-wasip2/release/hostile.wasm"
WORK=$(mktemp -d /tmp/coffer-stream.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export COFFER_HOME="$WORK/home"
cat > "$WORK/bp.yaml" <<YAML
apiVersion: coffer.dev/v1alpha1
kind: Blueprint
metadata: {name: stream}
spec:
  plugin: {path: $PLUGIN}
  grants: {exec: ["head **"], unsafeArgs: true, location: [read, write, delete]}
---
apiVersion: coffer.dev/v1alpha1
kind: Workload
metadata: {name: stream}
spec: {blueprint: stream}
YAML
"$COFFER" apply -f "$WORK/bp.yaml" >/dev/null

start=$(date +%s.%N)
"$COFFER" backup stream -p mode=stream -p bytes="$SIZE" >/dev/null 2>&1 & pid=$!
hwm=0
while kill -0 "$pid" 2>/dev/null; do
  v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$v" ] && hwm=$v
  sleep 0.05
done
wait "$pid"
t_coffer=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
rm -rf "$COFFER_HOME/locations"

start=$(date +%s.%N)
head -c "$SIZE" /dev/urandom | zstd -q -3 | tee "$WORK/ref.zst" | sha256sum >/dev/null
t_ref=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")

echo "stream of $SIZE bytes: coffer ${t_coffer}s, head | zstd | tee file | sha256sum ${t_ref}s, ratio $(python3 -c "print(round($t_coffer / $t_ref, 2))")"
echo "coffer peak RSS: $((hwm / 1024)) MiB"
