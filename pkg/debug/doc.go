// Package debug serves eastwest's operator endpoints (an index at /):
// /debug/clusters, /debug/mcs, /debug/syncz, /debug/refused,
// /debug/config_dump, /debug/explain, /debug/gateways, /debug/writeback,
// /debug/pprof/, /metrics, /healthz and /readyz (docs/metrics.md).
// Everything it prints is read from snapshots; it never prints secret
// material (Secret resources are left out of dumps).
package debug
