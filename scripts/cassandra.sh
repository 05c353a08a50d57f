#!/usr/bin/env bash
# Install what the Cassandra and Medusa tests need, once, into COFFER_TOOLS (default
# ~/.cache/coffer-tools), all from the package registries (no tarball, no Docker):
#   cassandra/lib           Apache Cassandra 5.0.9 (cassandra-all and its runtime dependencies
#                           from Maven Central), run with plain `java` 17
#   cassandra/venv-cqlsh    cqlsh from PyPI
#   cassandra/venv-medusa   cassandra-medusa 0.31.0 from PyPI, with the gRPC packages its wheel
#                           does not declare (its gRPC server is what k8ssandra's operator calls)
# The tests start and stop their own node (tests/src/cassandra.rs). Safe to run concurrently
# (flock) and repeatedly (does nothing when all is there).
set -euo pipefail
TOOLS="${COFFER_TOOLS:-$HOME/.cache/coffer-tools}"
ROOT="$TOOLS/cassandra"
CASSANDRA_VERSION=5.0.9
CQLSH_VERSION=6.2.2
MEDUSA_VERSION=0.31.0
GRPCIO_VERSION=1.81.0
PROTOBUF_VERSION=6.33.6
# medusa 0.31 requires Python >= 3.11 and < 3.13.
PYTHON=${PYTHON:-python3}
mkdir -p "$ROOT"
exec 9>"$ROOT/.install.lock"
flock 9

. "$(dirname "$0")/maven-jars.sh"
maven_jars "$ROOT" "cassandra-all=$CASSANDRA_VERSION" scripts/cassandra.sh \
  "cassandra-all-$CASSANDRA_VERSION.jar" "
    <dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$CASSANDRA_VERSION</version></dependency>"
ls "$ROOT"/lib/jamm-*.jar >/dev/null

venv() { # venv DIR STAMP PACKAGES...
  local dir=$1 want=$2; shift 2
  [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ] && return 0
  echo "installing $* into $dir" >&2
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@" >&2
  echo "$want" > "$dir/.stamp"
}
venv "$ROOT/venv-cqlsh" "cqlsh=$CQLSH_VERSION" "cqlsh==$CQLSH_VERSION"
venv "$ROOT/venv-medusa" "medusa=$MEDUSA_VERSION grpcio=$GRPCIO_VERSION" \
  "cassandra-medusa==$MEDUSA_VERSION" "grpcio==$GRPCIO_VERSION" \
  "grpcio-health-checking==$GRPCIO_VERSION" "protobuf==$PROTOBUF_VERSION"
