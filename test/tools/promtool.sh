#!/usr/bin/env bash
# Builds Prometheus's promtool from the Go module proxy into OUT (default
# .cache/bin), from its own nested module (test/tools/promtool), for the
# alert rules' tests. A promtool built from the pinned module version is
# kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version="$(awk '$1 == "github.com/prometheus/prometheus" {print $2}' "$here/promtool/go.mod")"
stamp="$out/.promtool-$version"
if [ -x "$out/promtool" ] && [ -f "$stamp" ]; then
  echo "promtool ($version): cached in $out"
  exit 0
fi
echo "building promtool ($version) into $out"
start=$SECONDS
(cd "$here/promtool" && go build -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool)
rm -f "$out"/.promtool-*
touch "$stamp"
echo "built promtool in $((SECONDS - start)) s"
