#!/usr/bin/env bash
# Builds CoreDNS into OUT (default .cache/bin), for the ClusterSet DNS
# tests. It is the stock binary (every plugin), as clusters run it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/gotool.sh" "${1:-$here/../../.cache/bin}" coredns github.com/coredns/coredns github.com/coredns/coredns
