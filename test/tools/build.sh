#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the real-cluster tests from the Go
# module proxy into OUT (default .cache/k8s), each from its own nested
# module; with "node" as the second argument, also the components of the
# real-node clusters (test/cluster): kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy and kubectl, in one `go build` so that the
# packages they share compile once. A binary whose --version already
# reports the pinned version is kept: a warm machine spends seconds here,
# a cold one about ten minutes (twenty with "node").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/k8s}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

KUBE_VERSION=v1.37.1
ETCD_VERSION=3.6.16
KUBE_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"

# progress runs a build, saying every 30 s that it is still going and at
# the end how long it took: a cold build is minutes of silence otherwise.
progress() {
  local what="$1"; shift
  local start=$SECONDS
  ( while sleep 30; do echo "  ... still building $what ($((SECONDS - start)) s)"; done ) &
  local ticker=$!
  local rc=0
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ "$rc" -eq 0 ]; then
    echo "built $what in $((SECONDS - start)) s"
  fi
  return "$rc"
}

if "$out/kube-apiserver" --version 2>/dev/null | grep -q "Kubernetes $KUBE_VERSION\$"; then
  echo "kube-apiserver $KUBE_VERSION: cached in $out"
else
  echo "building kube-apiserver $KUBE_VERSION into $out (cold, 2 cores: 8.5 min measured, 2.4 GB RAM)"
  (cd "$here/kubernetes" && progress "kube-apiserver $KUBE_VERSION" go build -o "$out/kube-apiserver" \
    -ldflags "$KUBE_LDFLAGS" \
    k8s.io/kubernetes/cmd/kube-apiserver)
fi

if "$out/etcd" --version 2>/dev/null | grep -q "etcd Version: $ETCD_VERSION\$"; then
  echo "etcd $ETCD_VERSION: cached in $out"
else
  echo "building etcd $ETCD_VERSION into $out"
  (cd "$here/etcd" && progress "etcd $ETCD_VERSION" go build -o "$out/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3)
fi

if [ "${2:-}" = node ]; then
  missing=()
  for c in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    "$out/$c" --version 2>/dev/null | grep -q "Kubernetes $KUBE_VERSION\$" || missing+=("k8s.io/kubernetes/cmd/$c")
  done
  "$out/kubectl" version --client 2>/dev/null | grep -q "Client Version: $KUBE_VERSION\$" || missing+=(k8s.io/kubernetes/cmd/kubectl)
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl $KUBE_VERSION: cached in $out"
  else
    echo "building ${missing[*]##*/} $KUBE_VERSION into $out (cold, 2 cores: about 8 min, 3 GB RAM)"
    (cd "$here/kubernetes" && progress "${missing[*]##*/} $KUBE_VERSION" go build -o "$out/" -ldflags "$KUBE_LDFLAGS" "${missing[@]}")
  fi
fi
