#!/usr/bin/env bash
# Builds Helm from the Go module proxy into OUT/bin (default .cache/bin),
# from its own nested module (test/tools/helm), and fetches the CRDs the
# chart's objects need in the test apiserver (cert-manager's, the
# Prometheus Operator's) from their Go modules into OUT/crds. Kept while
# the pinned versions match.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache}"
mkdir -p "$out/bin" "$out/crds"
out="$(cd "$out" && pwd)"
version="$(awk '{for (i = 1; i < NF; i++) if ($i == "helm.sh/helm/v3") {print $(i + 1); exit}}' "$here/helm/go.mod")"
certmanager=github.com/cert-manager/cert-manager@v1.21.2
promoperator=github.com/prometheus-operator/prometheus-operator@v0.85.0
stamp="$out/bin/.helm-$version-${certmanager##*@}-${promoperator##*@}"
if [ -x "$out/bin/helm" ] && [ -f "$stamp" ]; then
  echo "helm ($version) and CRDs: cached in $out"
  exit 0
fi
echo "building helm ($version) into $out/bin"
start=$SECONDS
(cd "$here/helm" && go build -o "$out/bin/helm" helm.sh/helm/v3/cmd/helm)
echo "built helm in $((SECONDS - start)) s; fetching CRDs ($certmanager, $promoperator)"
dir() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
rm -f "$out"/crds/*.yaml
cm="$(dir "$certmanager")"
cp "$cm"/deploy/crds/cert-manager.io_*.yaml "$out/crds/"
po="$(dir "$promoperator")"
cp "$po"/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
   "$po"/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml "$out/crds/"
chmod 644 "$out"/crds/*.yaml
rm -f "$out"/bin/.helm-*
touch "$stamp"
echo "helm and CRDs ready in $((SECONDS - start)) s"
