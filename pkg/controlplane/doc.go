// Package controlplane wires eastwest's stages into a running control
// plane: the node contract (which view an xDS client reads), the one
// Writer that batches source events into the Store, translates the
// services they touched and publishes them to the xDS cache, and the gRPC
// xDS server.
package controlplane
