#!/usr/bin/env bash
# Builds a command of a Go module the tests use, from the Go module proxy,
# from its own nested module test/tools/NAME (whose go.mod pins MODULE's
# version), into OUT/NAME. A binary built from the pinned version is kept.
#
#   gotool.sh OUT NAME MODULE PACKAGE
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1" name="$2" module="$3" package="$4"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version="$(awk -v m="$module" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$here/$name/go.mod")"
if [ -z "$version" ]; then
  echo "test/tools/$name/go.mod does not require $module" >&2
  exit 1
fi
stamp="$out/.$name-$version"
if [ -x "$out/$name" ] && [ -f "$stamp" ]; then
  echo "$name ($version): cached in $out"
  exit 0
fi
echo "building $name ($module $version) into $out"
start=$SECONDS
(cd "$here/$name" && go build -o "$out/$name" "$package")
rm -f "$out/.$name"-*
touch "$stamp"
echo "built $name in $((SECONDS - start)) s"
