// Package grafana holds eastwest's Grafana dashboard (eastwest.json: import
// it, or mount it with a dashboard provider); its test checks that every
// query names metrics eastwest exports.
package grafana
