// Package debug serves eastwest's operator endpoints: /debug/clusters,
// /debug/mcs, /debug/syncz, /debug/config_dump, /debug/explain, /metrics,
// /healthz and /readyz. Everything it prints is read from snapshots; it
// never prints secret material (Secret resources are left out of dumps).
package debug
