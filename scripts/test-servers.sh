#!/usr/bin/env bash
# Install the object storage servers the location tests use, once, into COFFER_TOOLS
# (default ~/.cache/coffer-tools), outside any clone so they are not rebuilt:
#   moto 5.2.5 in a virtualenv (faithful multipart / Object Lock semantics)
#   s3s-fs 0.14.1 via cargo install (SigV4 checked, data on disk)
#   Azurite 3 via npm (the Azure Blob emulator), and azure-storage-blob in the virtualenv
#   to create its containers
#   fake-gcs-server 1.56.1 built from its module with scripts/fake-gcs/coffer_xml.go added
#   (the GCS XML API calls object_store makes, which upstream lacks)
# Safe to run concurrently (flock) and repeatedly (does nothing when both are there).
# Called by .ci/run, and by the tests themselves when a server is missing.
set -euo pipefail
# npm and python3-venv come from Debian.
"$(dirname "$0")/test-packages.sh"
TOOLS="${COFFER_TOOLS:-$HOME/.cache/coffer-tools}"
mkdir -p "$TOOLS"
exec 9>"$TOOLS/.install.lock"
flock 9
if [ ! -x "$TOOLS/venv/bin/moto_server" ]; then
  echo "installing moto 5.2.5 into $TOOLS/venv (about a minute)" >&2
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q 'moto==5.2.5' flask flask-cors >&2
fi
if ! "$TOOLS/venv/bin/python" -c 'import azure.storage.blob' 2>/dev/null; then
  echo "installing azure-storage-blob into $TOOLS/venv" >&2
  "$TOOLS/venv/bin/pip" install -q 'azure-storage-blob>=12,<13' >&2
fi
if [ ! -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then
  echo "installing Azurite 3 into $TOOLS/azurite" >&2
  mkdir -p "$TOOLS/azurite"
  (cd "$TOOLS/azurite" && npm install --silent --no-audit --no-fund 'azurite@3' >&2)
fi
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  # Plain `cargo install s3s-fs` picks a version that needs a newer rustc; without the
  # `binary` feature there is no binary.
  echo "installing s3s-fs 0.14.1 into $TOOLS (about three minutes)" >&2
  cargo install -q s3s-fs --version 0.14.1 --locked --features binary --root "$TOOLS" >&2
fi
# Rebuilt when the added file changes (its digest is kept beside the binary).
gcs_patch="$(dirname "$0")/fake-gcs/coffer_xml.go"
gcs_sum="$(sha256sum "$gcs_patch" | cut -d' ' -f1)"
if [ ! -x "$TOOLS/bin/fake-gcs-server" ] || [ "$(cat "$TOOLS/bin/fake-gcs-server.sum" 2>/dev/null)" != "$gcs_sum" ]; then
  echo "building fake-gcs-server 1.56.1 into $TOOLS/bin (about a minute)" >&2
  src="$(cd /tmp && go mod download -json github.com/fsouza/fake-gcs-server@v1.56.1 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  build="$(mktemp -d)"
  cp -r "$src/." "$build/"
  chmod -R u+w "$build"
  cp "$gcs_patch" "$build/fakestorage/"
  sed -i 's/^\ts.handler = handler$/\ts.handler = s.cofferXML(handler)/' "$build/fakestorage/server.go"
  grep -q 's.cofferXML(handler)' "$build/fakestorage/server.go"
  mkdir -p "$TOOLS/bin"
  (cd "$build" && go build -o "$TOOLS/bin/fake-gcs-server" . >&2)
  echo "$gcs_sum" > "$TOOLS/bin/fake-gcs-server.sum"
  rm -rf "$build"
fi
