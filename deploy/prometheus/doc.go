// Package prometheus holds eastwest's Prometheus alert rules
// (eastwest-rules.yaml) and their promtool unit tests; the same groups are
// shipped as a PrometheusRule (deploy/kubernetes/prometheusrule.yaml).
package prometheus
