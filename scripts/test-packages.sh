#!/usr/bin/env bash
# Install the Debian packages the tests (and the quickstart) need, if any is missing:
# PostgreSQL 15 (server and client), MariaDB, etcd (server and etcdctl), Redis, age, zstd,
# npm and python3-venv (for the object storage servers of scripts/test-servers.sh), openssl
# and curl (for the Kubernetes control plane of scripts/kube.sh), restic (the retention oracle),
# btrfs-progs (local volume snapshots), mariadb-backup (a benchmark's reference), chromium
# and chromium-driver (the dashboard's browser tests), maven and Java 17 (the Kafka broker).
# Safe to run concurrently (flock) and repeatedly (does nothing when all are there).
# Called by the tests themselves on first use, by scripts/test-servers.sh and by
# scripts/quickstart.sh; needs root (or passwordless sudo) only when it installs something.
# Services are never started by the install: each test starts its own servers.
set -euo pipefail

missing=()
need() { # need COMMAND-OR-PATH PACKAGE
  if [[ "$1" == /* ]]; then [ -x "$1" ] || missing+=("$2")
  else command -v "$1" >/dev/null 2>&1 || missing+=("$2"); fi
}
need /usr/lib/postgresql/15/bin/initdb postgresql-15
need psql postgresql-client-15
need zstd zstd
need age age
need mariadbd mariadb-server
need mariadb mariadb-client
need etcd etcd-server
need etcdctl etcd-client
need redis-server redis-server
need npm npm
# The real Kubernetes control plane (scripts/kube.sh): its PKI and its readiness probes.
need openssl openssl
need curl curl
# The oracle of the retention tests (restic forget --dry-run).
need restic restic
# Local volume snapshots (a loop-mounted btrfs in the tests).
need mkfs.btrfs btrfs-progs
# MariaDB's own physical backup: what the quiesce-window benchmark compares against.
need mariadb-backup mariadb-backup
# Physical PostgreSQL backups (the pgbackrest plugin drives the real tool).
need pgbackrest pgbackrest
# The dashboard's browser tests: a real headless Chromium driven through WebDriver.
need chromium chromium
need chromedriver chromium-driver
# Apache Kafka (scripts/kafka.sh): Maven fetches its jars, Java 17 runs them.
need mvn maven
need java openjdk-17-jre-headless
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "the tests need these Debian packages: ${missing[*]}" >&2
    echo "install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

LOCK=/tmp/coffer-test-packages.lock
exec 9>"$LOCK"
flock 9
# Another run may have installed them while this one waited.
missing_now=()
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_now+=("$p")
done
[ ${#missing_now[@]} -eq 0 ] && exit 0

echo "installing Debian packages the tests need: ${missing_now[*]}" >&2
# Keep the packages' services from starting (the tests start their own, on their own ports).
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod +x "$policy"
  added_policy=1
fi
cleanup() { [ "$added_policy" = 1 ] && "${SUDO[@]}" rm -f "$policy"; return 0; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq "${missing_now[@]}" >&2
