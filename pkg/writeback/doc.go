// Package writeback makes eastwest the ClusterSet's MCS controller: in
// every member cluster where a service's namespace exists it writes the
// ServiceImport (and, for ClusterSetIP imports, a derived ClusterIP
// Service whose IPs become the import's spec.ips), the MCS EndpointSlices,
// and the conditions of the cluster's own ServiceExports. Everything it
// writes carries LabelManagedBy; it never touches anything else, and
// deletes what it wrote once the service is no longer exported.
//
// Only the leader writes (see Elect); every replica serves xDS.
package writeback
