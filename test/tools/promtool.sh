#!/usr/bin/env bash
# Fetches Prometheus's promtool, for the alert rules' tests (`promtool check
# rules`, `promtool test rules`), from Debian's prometheus package into OUT
# (default .cache/bin): the package is downloaded and unpacked, not
# installed (no server, no service). Kept while the package's version is
# the one the stamp names.
#
# Why Debian's and not a build from the Go module proxy: promtool imports
# every service discovery of Prometheus (Kubernetes, AWS, Azure, GCE...);
# building it took 745 s of a cold CI run on two cores, fetching it takes
# two seconds. The rules' tests ask of it only the PromQL evaluation of
# rules and their unit tests, which Debian 12's Prometheus 2.42 and the
# Prometheus 3 that users run agree on for these rules (both were run on
# them when this changed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version="$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p')"
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq
  version="$(apt-cache policy prometheus | sed -n 's/^ *Candidate: //p')"
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "promtool: Debian's package index has no prometheus package (apt-cache policy prometheus)" >&2
  exit 1
fi
stamp="$out/.promtool-$version"
if [ -x "$out/promtool" ] && [ -f "$stamp" ]; then
  echo "promtool (Debian prometheus $version): cached in $out"
  exit 0
fi
echo "fetching promtool (Debian prometheus $version) into $out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current folder; as root it warns that
# the _apt user cannot write there, which is harmless.
(cd "$work" && apt-get download -qq "prometheus=$version" 2>&1 | grep -v "couldn't be accessed by user '_apt'" || true)
deb="$(ls "$work"/prometheus_*.deb 2>/dev/null | head -1)"
if [ -z "$deb" ]; then
  echo "promtool: apt-get download prometheus=$version fetched nothing" >&2
  exit 1
fi
dpkg-deb -x "$deb" "$work/x"
install -m 0755 "$work/x/usr/bin/promtool" "$out/promtool.new"
mv "$out/promtool.new" "$out/promtool"
rm -f "$out"/.promtool-*
touch "$stamp"
"$out/promtool" --version 2>&1 | head -1
