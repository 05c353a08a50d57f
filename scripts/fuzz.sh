#!/usr/bin/env bash
# Fuzz plugin manifests (and exec patterns), the YAML kinds, and plugin admission, each for a
# bounded time. Needs the nightly toolchain and cargo-fuzz (installed here when missing).
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
mkdir -p "$CORPUS"/{manifest,yaml_kinds,admission}
for m in plugins/*/manifest.json tests/plugins/*/manifest.json; do
  cp "$m" "$CORPUS/manifest/$(basename "$(dirname "$m")").json"
done
cp blueprints/*.yaml "$CORPUS/yaml_kinds/"
printf 'pg_dump ** --file *\npg_dump -Fc --file x.dump shop' > "$CORPUS/manifest/pattern"
for w in target/wasm-plugins/wasm32-wasip2/release/*.wasm target/wasm-test-plugins/wasm32-wasip2/release/*.wasm; do
  [ -f "$w" ] && cp "$w" "$CORPUS/admission/"
done

for t in manifest yaml_kinds admission; do
  echo "== fuzzing $t for ${SECS}s"
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "$CORPUS/$t" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 -max_len=1048576
done
echo "fuzzing finished: no crash, no timeout"
