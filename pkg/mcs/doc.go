// Package mcs is the Multi-Cluster Services (KEP-1645) core of eastwest: the
// ClusterSet model, the merge rules that turn every member cluster's
// ServiceExports, Services and EndpointSlices into the ClusterSet's
// ServiceImports, per-cluster endpoints and ServiceExport conditions, and the
// Store that applies those rules incrementally. Each member's network
// (network.eastwest.io) and east-west gateway addresses are part of the
// ClusterSet model too (network.go).
//
// Everything here is pure: no clients, no clocks, no globals. Sources
// (package source) feed Events into a Store; the Store is owned by one
// goroutine, batches events and recomputes only the services they touch.
// The result is a State of immutable ServiceStates that later stages
// (translation to Envoy, write-back to clusters) read without locks.
package mcs
