// Package writeback makes eastwest the ClusterSet's MCS controller: in
// every member cluster where a service's namespace exists it writes the
// ServiceImport (and, for ClusterSetIP imports, a derived ClusterIP
// Service whose IPs become the import's spec.ips), the MCS EndpointSlices,
// and the conditions of the cluster's own ServiceExports. Everything it
// writes carries LabelManagedBy; it never touches anything else, and
// deletes what it wrote once the service is no longer exported. It also
// writes the statuses of the member's Gateway API objects of class
// eastwest (gatewaystatus.go): GatewayClass, Gateway, and this
// controller's parents of HTTPRoutes and GRPCRoutes, leaving other
// controllers' parents alone.
//
// It compares with informer caches of what it owns and of the exports
// (caches.go), so a pass costs only the writes it makes: after a restart
// with everything in place, none. Progress is in /metrics
// (eastwest_writeback_pending_services, eastwest_writeback_writes_total:
// MCS objects and statuses alike) and /debug/writeback (writes, passes),
// and every write is logged at debug level.
//
// Only the leader writes (see Elect); every replica serves xDS.
package writeback
