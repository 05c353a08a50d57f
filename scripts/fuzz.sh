#!/usr/bin/env bash
# Fuzz plugin manifests (and exec patterns), the YAML kinds, plugin admission and the exec
# argument policy, each for a bounded time. Needs the nightly toolchain and cargo-fuzz (installed here when missing).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# A crash or a timeout stops the run and leaves the input under tests/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The host embeds the first-party plugins: build them with the project's (stable) toolchain
# and let the nightly build of the host take them as they are (nightly may have no
# wasm32-wasip2 std to download).
cargo build --quiet -p coffer
export COFFER_PREBUILT_PLUGINS="$PWD/target/wasm-plugins/wasm32-wasip2/release"

# Seed each target with real inputs.
CORPUS="$PWD/target/fuzz-corpus"
mkdir -p "$CORPUS"/{manifest,yaml_kinds,admission,exec_policy}
for m in plugins/*/manifest.json tests/plugins/*/manifest.json; do
  cp "$m" "$CORPUS/manifest/$(basename "$(dirname "$m")").json"
done
cp blueprints/*.yaml "$CORPUS/yaml_kinds/"
printf 'pg_dump ** --file *\npg_dump -Fc --file x.dump shop' > "$CORPUS/manifest/pattern"
for w in target/wasm-plugins/wasm32-wasip2/release/*.wasm target/wasm-test-plugins/wasm32-wasip2/release/*.wasm; do
  [ -f "$w" ] && cp "$w" "$CORPUS/admission/"
done

# exec_policy: a program selector byte, then NUL-separated arguments.
i=0
for args in "-X --no-password -q --dbname=dbname='shop'" "-o |id -h /nonexistent" "-Xqo|id" \
            "--format=custom --compress=0 -f /tmp/x shop" "--no-defaults --host=db --tee=/tmp/x -e select" \
            "--rdb - -h 127.0.0.1" "snapshot save /tmp/coffer-scratch.fuzz/s.db" "-c \\! id"; do
  for sel in 0 1 2 3 4 5 6 7; do
    printf "\\x$(printf %02x $sel)" > "$CORPUS/exec_policy/seed-$i-$sel"
    printf '%s' "$args" | tr ' ' '\0' >> "$CORPUS/exec_policy/seed-$i-$sel"
  done
  i=$((i+1))
done

for t in manifest yaml_kinds admission exec_policy; do
  echo "== fuzzing $t for ${SECS}s"
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "$CORPUS/$t" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 -max_len=1048576
done
echo "fuzzing finished: no crash, no timeout"
