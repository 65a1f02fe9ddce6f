#!/usr/bin/env bash
# Builds CoreDNS into OUT (default .cache/bin), for the ClusterSet DNS
# tests. It is the stock binary (every plugin), as clusters run it, static
# (CGO off, -trimpath) as the real-node harness builds it for its CoreDNS
# image: the two builds share every compiled package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CGO_ENABLED=0 GOFLAGS=-trimpath exec "$here/gotool.sh" "${1:-$here/../../.cache/bin}" coredns github.com/coredns/coredns github.com/coredns/coredns
