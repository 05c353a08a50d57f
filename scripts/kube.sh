#!/usr/bin/env bash
# A real Kubernetes control plane for the tests, built from Go module source only (the
# machines that run them reach the Go module proxy, not dl.k8s.io or container registries):
#   kube-apiserver + kube-controller-manager v1.37.2 (k8s.io/kubernetes through the wrapper
#     module kube/go.mod, which maps its staging modules to their published v0.37.2)
#   etcd v3.7.3 (Debian's 3.4 lacks the WatchList support client-go informers now use)
#   kwok v0.8.0: fake Nodes whose Pods turn Running, and whose exec runs the command on
#     this machine, so a "pod" can run pg_dump against a local PostgreSQL
#
# Usage: scripts/kube.sh build          idempotent; about 15 min cold on 2 cores, then instant
#        scripts/kube.sh start DATA_DIR  fresh PKI, etcd, apiserver, controller manager, kwok
#        scripts/kube.sh stop DATA_DIR   stop what `start` started there, by PID
#        scripts/kube.sh env DATA_DIR    export lines: KUBECONFIG (admin), ALICE_KUBECONFIG
#
# Binaries are cached in $COFFER_TOOLS/kube/bin (default ~/.cache/coffer-tools/kube), keyed on
# the pinned versions; the Go build cache is removed after a build (it grows to 4 GB).
# Ports come from the environment (KUBE_APISERVER_PORT, KUBE_ETCD_PORT, KUBE_ETCD_PEER_PORT,
# KUBE_KCM_PORT, KUBE_KWOK_PORT); the defaults suit one manual instance. The tests choose free
# ports and their own DATA_DIR. kwok's exec server has no authentication: it listens on
# 127.0.0.1 only. Needs go, openssl and curl.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=${COFFER_TOOLS:-$HOME/.cache/coffer-tools}
BIN=$TOOLS/kube/bin
SRC=$TOOLS/kube/src
K8S_VERSION=1.37.2
ETCD_VERSION=v3.7.3
KWOK_VERSION=v0.8.0
ETCD_BIN=$BIN/etcd-$ETCD_VERSION

log() { printf '[kube.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- build
build_k8s() {
  local stamp=$BIN/.k8s-version
  if [[ -x $BIN/kube-apiserver && -x $BIN/kube-controller-manager && "$(cat "$stamp" 2>/dev/null)" == "$K8S_VERSION" ]]; then
    return
  fi
  mkdir -p "$SRC/k8s" "$BIN"
  cp "$HERE/kube/go.mod" "$HERE/kube/go.sum" "$SRC/k8s/"
  local minor=${K8S_VERSION#1.}; minor=${minor%%.*}
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for cmd in kube-apiserver kube-controller-manager; do
    log "building $cmd v$K8S_VERSION from the Go module proxy (once per machine; about 8 min for both on 2 cores)"
    (cd "$SRC/k8s" && go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
  echo "$K8S_VERSION" > "$stamp"
}

build_etcd() {
  [[ -x $ETCD_BIN ]] && return
  mkdir -p "$SRC/etcd" "$BIN"
  # go.etcd.io/etcd/server/v3 holds package main, but its go.mod has replace directives, so
  # `go install` refuses it: build it from a wrapper module (kube/etcd.go.mod pins its graph).
  cp "$HERE/kube/etcd.go.mod" "$SRC/etcd/go.mod"; cp "$HERE/kube/etcd.go.sum" "$SRC/etcd/go.sum"
  log "building etcd $ETCD_VERSION"
  (cd "$SRC/etcd" && go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN.tmp" go.etcd.io/etcd/server/v3)
  mv "$ETCD_BIN.tmp" "$ETCD_BIN"
}

build_kwok() {
  [[ -x $BIN/kwok && "$(cat "$BIN/.kwok-version" 2>/dev/null)" == "$KWOK_VERSION" ]] && return
  mkdir -p "$BIN"
  log "building kwok $KWOK_VERSION"
  GOBIN=$BIN go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  echo "$KWOK_VERSION" > "$BIN/.kwok-version"
}

cmd_build() {
  command -v go >/dev/null || die "go not found: install Go 1.26 (https://go.dev/doc/install)"
  mkdir -p "$TOOLS/kube"
  exec 9>"$TOOLS/kube/.build.lock"
  flock 9
  if [[ -x $ETCD_BIN && -x $BIN/kwok && -x $BIN/kube-apiserver && "$(cat "$BIN/.k8s-version" 2>/dev/null)" == "$K8S_VERSION" && "$(cat "$BIN/.kwok-version" 2>/dev/null)" == "$KWOK_VERSION" ]]; then
    return
  fi
  # A private build cache, removed afterwards: the binaries are what is kept.
  export GOCACHE=$TOOLS/kube/go-build
  build_etcd
  build_kwok
  build_k8s
  rm -rf "$GOCACHE"
  log "control plane binaries ready in $BIN"
}

# ---------------------------------------------------------------- start/stop
ports() {
  APISERVER_PORT=${KUBE_APISERVER_PORT:-16443}
  ETCD_PORT=${KUBE_ETCD_PORT:-12379}
  ETCD_PEER_PORT=${KUBE_ETCD_PEER_PORT:-12380}
  KCM_PORT=${KUBE_KCM_PORT:-10257}
  KWOK_PORT=${KUBE_KWOK_PORT:-10250}
  SERVER=https://127.0.0.1:$APISERVER_PORT
}

gen_cert() { # name CN O [extensions]
  local name=$1 cn=$2 o=$3 ext=${4:-"extendedKeyUsage=clientAuth"}
  local subj="/CN=$cn"; [[ -n $o ]] && subj="/O=$o/CN=$cn"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" > "$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

kubeconfig() { # file user cert key
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: coffer
  cluster: {server: "$SERVER", certificate-authority: "$PKI/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$3", client-key: "$4"}
contexts:
- name: coffer
  context: {cluster: coffer, user: $2}
current-context: coffer
EOF
}

gen_pki() {
  mkdir -p "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 365 \
    -subj "/CN=coffer-test-ca" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  gen_cert apiserver kube-apiserver "" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  gen_cert admin kube-admin system:masters
  gen_cert alice alice ""                       # a user with no groups: only what RBAC grants
  gen_cert kcm system:kube-controller-manager ""
  gen_cert kwok kwok-controller system:masters
  gen_cert kubelet-client kube-apiserver-kubelet-client system:masters
  gen_cert kwok-serving kwok-kubelet "" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  kubeconfig "$DATA/admin.kubeconfig" kube-admin "$PKI/admin.crt" "$PKI/admin.key"
  kubeconfig "$DATA/alice.kubeconfig" alice "$PKI/alice.crt" "$PKI/alice.key"
  kubeconfig "$DATA/kcm.kubeconfig" system:kube-controller-manager "$PKI/kcm.crt" "$PKI/kcm.key"
  kubeconfig "$DATA/kwok.kubeconfig" kwok-controller "$PKI/kwok.crt" "$PKI/kwok.key"
}

alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

spawn() { # name cmd...
  local name=$1; shift
  # setsid: the process outlives this script; the tests stop it by the PID written here.
  setsid "$@" > "$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

wait_for() { # name timeout cmd...
  local name=$1 timeout=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    alive "$name" || { tail -20 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    (( SECONDS - start > timeout )) && { tail -20 "$LOGS/$name.log" >&2; die "$name not ready after ${timeout}s (log: $LOGS/$name.log)"; }
    sleep 0.2
  done
}

cmd_start() {
  for b in "$ETCD_BIN" "$BIN/kube-apiserver" "$BIN/kube-controller-manager" "$BIN/kwok"; do
    [[ -x $b ]] || die "$b missing: run 'scripts/kube.sh build' first"
  done
  alive kube-apiserver && die "a control plane already runs from $DATA: 'scripts/kube.sh stop $DATA' first"
  rm -rf "$DATA"; mkdir -p "$LOGS" "$RUN"
  gen_pki
  spawn etcd "$ETCD_BIN" --name kube --data-dir "$DATA/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kube=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --listen-metrics-urls=
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  # Every request's metadata (user, impersonated user, verb, URI, status) in
  # logs/audit.log: the tests read what the daemon was refused there.
  printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n' > "$DATA/audit-policy.yaml"
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --audit-policy-file="$DATA/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$PKI/kubelet-client.crt" --kubelet-client-key="$PKI/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP --kubelet-certificate-authority="$PKI/ca.crt" \
    --cert-dir="$DATA/apiserver-certs" --profiling=false --v=1
  wait_for kube-apiserver 180 curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$SERVER/readyz"

  # Without it: no `default` ServiceAccount in new namespaces, no garbage collection,
  # StatefulSets make no Pods. There is no scheduler: pods name their node.
  spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DATA/kcm.kubeconfig" \
    --authentication-kubeconfig="$DATA/kcm.kubeconfig" --authorization-kubeconfig="$DATA/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$DATA/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range=10.96.0.0/16 --controllers='*' --v=1
  wait_for kube-controller-manager 120 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"

  # kwok runs an exec'd command with its own environment plus the `envs` of the pod's
  # kwok.x-k8s.io Exec object (the tests write one per pod from its containers' env, as a
  # kubelet would); pods with none get the ClusterExec of kwok.yaml.
  post /apis/apiextensions.k8s.io/v1/customresourcedefinitions < "$HERE/kube/kwok-exec-crd.yaml"
  post /api/v1/nodes <<'NODE'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node, kubernetes.io/os: linux}
NODE
  sed -e "s/@KWOK_PORT@/$KWOK_PORT/g" "$HERE/kube/kwok.yaml" > "$DATA/kwok.yaml"
  spawn kwok "$BIN/kwok" --kubeconfig="$DATA/kwok.kubeconfig" --config="$DATA/kwok.yaml" \
    --enable-crds=Exec \
    --tls-cert-file="$PKI/kwok-serving.crt" --tls-private-key-file="$PKI/kwok-serving.key"
  wait_for kwok 60 curl -fsSk "https://127.0.0.1:$KWOK_PORT/healthz"
  wait_for kwok 60 node_ready

  # With KUBE_OWNER_PID set (the tests' own PID), everything stops and DATA_DIR goes when
  # that process ends, however it ends.
  if [[ -n ${KUBE_OWNER_PID:-} ]]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -f "$3/run/watchdog.pid"; "$2" stop "$3"; rm -rf "$3"' \
      watchdog "$KUBE_OWNER_PID" "$HERE/kube.sh" "$DATA" > /dev/null 2>&1 < /dev/null &
    echo $! > "$RUN/watchdog.pid"
  fi
  cmd_env
}

# POST a YAML object (stdin) to the API server as the admin.
post() {
  curl -fsS -o /dev/null --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    -X POST -H 'Content-Type: application/yaml' --data-binary @- "$SERVER$1" \
    || die "creating $1 failed"
}

node_ready() {
  curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$SERVER/api/v1/nodes/kwok-node" | tr -d ' \n' | grep -q '"type":"Ready","status":"True"\|"status":"True","type":"Ready"'
}

cmd_stop() {
  local name pid
  for name in watchdog kwok kube-controller-manager kube-apiserver etcd; do
    [[ -f $RUN/$name.pid ]] || continue
    pid=$(cat "$RUN/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$RUN/$name.pid"
  done
}

cmd_env() {
  echo "export KUBECONFIG=$DATA/admin.kubeconfig"
  echo "export ALICE_KUBECONFIG=$DATA/alice.kubeconfig"
}

case ${1:-} in
  build) cmd_build ;;
  start|stop|env)
    [[ -n ${2:-} ]] || die "usage: scripts/kube.sh $1 DATA_DIR"
    DATA=$(realpath -m "$2"); PKI=$DATA/pki; LOGS=$DATA/logs; RUN=$DATA/run
    ports
    "cmd_$1" ;;
  *) echo "usage: scripts/kube.sh build | start DATA_DIR | stop DATA_DIR | env DATA_DIR" >&2; exit 2 ;;
esac
