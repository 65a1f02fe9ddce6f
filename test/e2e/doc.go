// Package e2e holds end-to-end tests: the real control plane (file
// source, xDS server, debug endpoint) in the test process, real gRPC
// backends on distinct loopback addresses standing for pods of different
// member clusters, and gRPC-Go's own xDS client sending real RPCs.
package e2e
