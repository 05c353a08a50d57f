#!/usr/bin/env bash
# Install what the Kafka tests need, once, into COFFER_TOOLS (default ~/.cache/coffer-tools):
#   kafka/lib   Apache Kafka 4.4.0's broker jars from Maven Central (kafka_2.13 and its runtime
#               dependencies, plus the one slf4j binding its POMs leave out), run with plain `java`
#   kafka/venv  confluent-kafka from PyPI, which the tests' fixture tool produces and checks with
# The tests start and stop their own brokers (tests/src/kafka.rs). Safe to run concurrently
# (flock) and repeatedly (does nothing when both are there). Called by .ci/run and by the
# tests when something is missing.
set -euo pipefail
TOOLS="${COFFER_TOOLS:-$HOME/.cache/coffer-tools}"
ROOT="$TOOLS/kafka"
KAFKA_VERSION=4.4.0
# The log4j-core kafka-server 4.4.0 depends on; the slf4j 1.x binding must match it.
LOG4J2_VERSION=2.25.5
CONFLUENT_KAFKA_VERSION=2.16.1
mkdir -p "$ROOT"
exec 9>"$ROOT/.install.lock"
flock 9
. "$(dirname "$0")/maven-jars.sh"
maven_jars "$ROOT" "kafka_2.13=$KAFKA_VERSION log4j2=$LOG4J2_VERSION" scripts/kafka.sh \
  "kafka_2.13-$KAFKA_VERSION.jar" "
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>1.7.36</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J2_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J2_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J2_VERSION</version></dependency>"
if ! "$ROOT/venv/bin/python" -c "import confluent_kafka,sys; sys.exit(confluent_kafka.version() != '$CONFLUENT_KAFKA_VERSION')" 2>/dev/null; then
  echo "installing confluent-kafka $CONFLUENT_KAFKA_VERSION into $ROOT/venv" >&2
  rm -rf "$ROOT/venv"
  python3 -m venv "$ROOT/venv"
  "$ROOT/venv/bin/pip" install -q --disable-pip-version-check "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >&2
fi
