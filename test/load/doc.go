// Command load measures xDS push performance: N simulated ADS clients
// (real gRPC streams on loopback, SotW or delta, in a child process)
// subscribed to S services' ClusterLoadAssignments of E endpoints each,
// served by eastwest's cache and, in the same run and on the same inputs,
// by go-control-plane's LinearCache and SnapshotCache behind the same
// go-control-plane server. It reports, per cache and protocol: the cold
// sync of all clients, the latency of a one-service change at the clients
// (p50, p99, max over clients x changes) and the server's CPU per change
// (the parent process's rusage, which holds only the server).
//
//	go run ./test/load -clients 100 -services 1000 -endpoints 100
package main
