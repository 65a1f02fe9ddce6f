#!/usr/bin/env bash
# Builds CoreDNS from the Go module proxy into OUT (default .cache/bin),
# from its own nested module (test/tools/coredns), for the ClusterSet DNS
# tests. It is the stock binary (every plugin), as clusters run it. A
# CoreDNS built from the pinned module version is kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version="$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/coredns/coredns") {print $(i + 1); exit}}' "$here/coredns/go.mod")"
stamp="$out/.coredns-$version"
if [ -x "$out/coredns" ] && [ -f "$stamp" ]; then
  echo "coredns ($version): cached in $out"
  exit 0
fi
echo "building coredns ($version) into $out"
start=$SECONDS
(cd "$here/coredns" && go build -o "$out/coredns" github.com/coredns/coredns)
rm -f "$out"/.coredns-*
touch "$stamp"
echo "built coredns in $((SECONDS - start)) s"
