// Package controlplane runs eastwest: the App `xds serve` is (sources,
// Writer, xDS server, debug endpoint, write-back), the Writer (the one
// goroutine that batches source events, flushes the assembler and
// publishes each Plan into the xDS cache, with readiness, liveness and the
// debug snapshot), the node contract (which view an xDS client reads) and
// the xDS identity that binds a node to a client certificate.
package controlplane
