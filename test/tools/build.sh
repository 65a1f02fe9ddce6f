#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the real-cluster tests from the Go
# module proxy into OUT (default .cache/k8s), each from its own nested
# module. A binary whose --version already reports the pinned version is
# kept: a warm machine spends seconds here, a cold one about ten minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/k8s}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

KUBE_VERSION=v1.37.1
ETCD_VERSION=3.6.16

if "$out/kube-apiserver" --version 2>/dev/null | grep -q "Kubernetes $KUBE_VERSION\$"; then
  echo "kube-apiserver $KUBE_VERSION: cached in $out"
else
  echo "building kube-apiserver $KUBE_VERSION into $out (cold: ~6 min, 2.4 GB RAM)"
  (cd "$here/kube-apiserver" && go build -o "$out/kube-apiserver" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
    k8s.io/kubernetes/cmd/kube-apiserver)
fi

if "$out/etcd" --version 2>/dev/null | grep -q "etcd Version: $ETCD_VERSION\$"; then
  echo "etcd $ETCD_VERSION: cached in $out"
else
  echo "building etcd $ETCD_VERSION into $out"
  (cd "$here/etcd" && go build -o "$out/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3)
fi
