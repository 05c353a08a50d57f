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

stamp="cassandra-all=$CASSANDRA_VERSION"
if [ "$(cat "$ROOT/lib/.stamp" 2>/dev/null)" != "$stamp" ]; then
  command -v mvn >/dev/null || { echo "scripts/cassandra.sh: mvn is missing (apt-get install maven)" >&2; exit 1; }
  echo "installing Apache Cassandra $CASSANDRA_VERSION's jars into $ROOT/lib (a minute or two)" >&2
  mkdir -p "$ROOT/build"
  cat > "$ROOT/build/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.coffer.tests</groupId>
  <artifactId>cassandra-node</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$CASSANDRA_VERSION</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$ROOT/lib.tmp"
  if ! (cd "$ROOT/build" && mvn -B -q -Dstyle.color=never \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$ROOT/lib.tmp" > "$ROOT/build/mvn.log" 2>&1); then
    tail -n 40 "$ROOT/build/mvn.log" >&2
    echo "scripts/cassandra.sh: fetching Cassandra's jars failed (log: $ROOT/build/mvn.log)" >&2
    exit 1
  fi
  test -f "$ROOT/lib.tmp/cassandra-all-$CASSANDRA_VERSION.jar"
  ls "$ROOT"/lib.tmp/jamm-*.jar >/dev/null
  rm -rf "$ROOT/lib"
  mv "$ROOT/lib.tmp" "$ROOT/lib"
  echo "$stamp" > "$ROOT/lib/.stamp"
fi

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
