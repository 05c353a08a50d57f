# Sourced by the installers that run Java servers from Maven Central's jars (kafka.sh,
# cassandra.sh): `maven_jars ROOT STAMP NAME JAR DEPENDENCIES` puts the runtime jars of
# DEPENDENCIES (<dependency> elements) into ROOT/lib unless ROOT/lib/.stamp says STAMP;
# JAR is a file that must be among them. Fetched into lib.tmp and moved, so a failed fetch
# never leaves a half lib behind.
maven_jars() {
  local root=$1 stamp=$2 name=$3 jar=$4 deps=$5
  [ "$(cat "$root/lib/.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  command -v mvn >/dev/null || { echo "$name: mvn is missing (apt-get install maven)" >&2; return 1; }
  echo "$name: installing $stamp into $root/lib (a minute or two)" >&2
  mkdir -p "$root/build"
  cat > "$root/build/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.coffer.tests</groupId>
  <artifactId>server-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$deps
  </dependencies>
</project>
POM
  rm -rf "$root/lib.tmp"
  if ! (cd "$root/build" && mvn -B -q -Dstyle.color=never \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$root/lib.tmp" > "$root/build/mvn.log" 2>&1); then
    tail -n 40 "$root/build/mvn.log" >&2
    echo "$name: fetching the jars failed (log: $root/build/mvn.log)" >&2
    return 1
  fi
  [ -f "$root/lib.tmp/$jar" ] || { echo "$name: $jar is not among the fetched jars" >&2; return 1; }
  rm -rf "$root/lib"
  mv "$root/lib.tmp" "$root/lib"
  echo "$stamp" > "$root/lib/.stamp"
}
