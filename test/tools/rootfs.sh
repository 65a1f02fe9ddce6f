#!/usr/bin/env bash
# Makes the Debian root filesystem the real-node clusters' test images
# are built on (test/cluster.DebianImages): the Envoy gateways' image
# (Envoy 1.40 from PyPI on this layer) and the tools images the upstream
# MCS conformance suite runs (socat; sh, nc, nslookup), as one tar in OUT
# (default .cache/node/rootfs.tar). debootstrap's minbase variant of
# Debian 12 with the packages below, trimmed of docs, manuals, locales and
# apt's lists and archives. Kept while its stamp (suite and packages)
# matches. Needs root (debootstrap chroots), as the clusters do; installs
# debootstrap from Debian's packages when it is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache/node/rootfs.tar}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# socat: the conformance suite's service pods. netcat-openbsd (nc -4/-6
# -v -w) and bind9-dnsutils (nslookup): its request pods. curl, iproute2,
# procps, ca-certificates: what a person exec'ing into a test pod reaches for.
PACKAGES=socat,netcat-openbsd,bind9-dnsutils,curl,iproute2,procps,ca-certificates
stamp="$SUITE $PACKAGES"

if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "Debian $SUITE root filesystem: cached in $out"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "the test images' root filesystem is made by debootstrap, which needs root; run as root" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "installing debootstrap for the test images"
  apt-get install -y -qq debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
fi

echo "making the Debian $SUITE root filesystem for the test images into $out (about 60 s)"
start=$SECONDS
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || {
  tail -20 "$tmp/debootstrap.log" >&2
  exit 1
}
rm -rf "$tmp/root"/var/cache/apt/* "$tmp/root"/var/lib/apt/lists/* "$tmp/root"/usr/share/doc \
  "$tmp/root"/usr/share/man "$tmp/root"/usr/share/info "$tmp/root"/usr/share/locale "$tmp/root"/var/log/* \
  "$tmp/root"/dev/*
# Owners numeric, times as made: the layer is not meant to be reproducible
# bit for bit (apt's own files carry the day), only identical in content.
tar --numeric-owner --sort=name -C "$tmp/root" -cf "$out.new" .
mv "$out.new" "$out"
echo "$stamp" >"$out.stamp"
echo "made the root filesystem in $((SECONDS - start)) s ($(du -h "$out" | cut -f1))"
