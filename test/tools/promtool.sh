#!/usr/bin/env bash
# Builds Prometheus's promtool into OUT (default .cache/bin), for the alert
# rules' tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/gotool.sh" "${1:-$here/../../.cache/bin}" promtool github.com/prometheus/prometheus github.com/prometheus/prometheus/cmd/promtool
