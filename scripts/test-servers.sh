#!/usr/bin/env bash
# Install the S3 protocol servers the location tests use, once, into COFFER_TOOLS
# (default ~/.cache/coffer-tools), outside any clone so they are not rebuilt:
#   moto 5.2.5 in a virtualenv (faithful multipart / Object Lock semantics)
#   s3s-fs 0.14.1 via cargo install (SigV4 checked, data on disk)
# Safe to run concurrently (flock) and repeatedly (does nothing when both are there).
# Called by .ci/run, and by the tests themselves when a server is missing.
set -euo pipefail
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
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  # Plain `cargo install s3s-fs` picks a version that needs a newer rustc; without the
  # `binary` feature there is no binary.
  echo "installing s3s-fs 0.14.1 into $TOOLS (about three minutes)" >&2
  cargo install -q s3s-fs --version 0.14.1 --locked --features binary --root "$TOOLS" >&2
fi
