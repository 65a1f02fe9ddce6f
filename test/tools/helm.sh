#!/usr/bin/env bash
# Builds Helm into OUT/bin (default .cache/bin) and fetches the CRDs the
# chart's objects need in the test apiserver (cert-manager's and its
# approver-policy's, the Prometheus Operator's) from their Go modules into OUT/crds. Kept while
# the pinned versions match.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.cache}"
"$here/gotool.sh" "$out/bin" helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm
certmanager=github.com/cert-manager/cert-manager@v1.21.2
promoperator=github.com/prometheus-operator/prometheus-operator@v0.85.0
approverpolicy=github.com/cert-manager/approver-policy@v0.28.0
mkdir -p "$out/crds"
stamp="$out/crds/.${certmanager##*/}-${promoperator##*/}-${approverpolicy##*/}"
if [ -f "$stamp" ]; then
  echo "CRDs ($certmanager, $promoperator, $approverpolicy): cached in $out/crds"
  exit 0
fi
echo "fetching CRDs ($certmanager, $promoperator, $approverpolicy) into $out/crds"
dir() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
rm -f "$out"/crds/*.yaml "$out"/crds/.*@*
cm="$(dir "$certmanager")"
cp "$cm"/deploy/crds/cert-manager.io_*.yaml "$out/crds/"
po="$(dir "$promoperator")"
cp "$po"/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
   "$po"/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml "$out/crds/"
ap="$(dir "$approverpolicy")"
cp "$ap"/deploy/crds/policy.cert-manager.io_certificaterequestpolicies.yaml "$out/crds/"
chmod 644 "$out"/crds/*.yaml
touch "$stamp"
