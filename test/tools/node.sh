#!/usr/bin/env bash
# Makes this machine able to run the real-node clusters (test/cluster):
# the Debian packages their nodes use (runc, the CNI plugins, iptables,
# conntrack) installed when missing, containerd v2 built from the Go
# module proxy into OUT (default .cache/node; kept while `containerd
# --version` reports the pinned version), and the Kubernetes components
# (build.sh node).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/node}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
CONTAINERD_VERSION=v2.4.2

need=()
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "the real-node clusters need ${need[*]} (Debian packages) and root; run as root" >&2
    exit 1
  fi
  echo "installing ${need[*]} for the real-node clusters"
  apt-get install -y -qq "${need[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

if "$out/containerd" --version 2>/dev/null | grep -q " $CONTAINERD_VERSION "; then
  echo "containerd $CONTAINERD_VERSION: cached in $out"
else
  echo "building containerd $CONTAINERD_VERSION into $out (cold, 2 cores: about 90 s)"
  start=$SECONDS
  (cd "$here/containerd" && CGO_ENABLED=0 go build -o "$out/" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr)
  echo "built containerd $CONTAINERD_VERSION in $((SECONDS - start)) s"
fi

# The Debian root filesystem the test images are built on.
"$here/rootfs.sh" "$out/rootfs.tar"
