// Package assemble turns source events into what every xDS view serves.
//
// One Assembler per control plane (and one per `xds translate`):
//
//	Apply(event)  routes the event to the store that owns its object
//	              (pkg/mcs for MCS inputs, pkg/gatewayapi for Gateway API
//	              objects and TLS Secrets; Namespaces, Services and
//	              member joins and leaves to both)
//	Merge()       merges the services the events touched (KEP-1645)
//	Flush() Plan  builds the Gateway API results that depend on what
//	              changed, translates only what a change touches for every
//	              view (pkg/translate), and returns the ordered updates
//
// The Plan's updates are in make-before-break order (secrets, clusters,
// endpoints, listeners, routes; then deletions in reverse), carry only
// what changed, and keep the last good version of a resource that failed
// validation. The Assembler also keeps every view's current resources:
// View is what `xds translate` prints and what the golden tests compare,
// from the same code `xds serve` publishes through. Incremental results
// equal a fresh build of the same input (assemble_test.go).
//
// Its parts, one concern each:
//
//	assemble.go    the Assembler: the stages of a Flush, the views
//	classify.go    what a service's change touches (shapeSignature,
//	               gatewaySignature): endpoints only, or the gateways' routing
//	gatewayapi.go  the Gateway API scheduling: which members to build again
//	               (refSignature), the gateway-api views, mesh routes
//	ledger.go      what every view publishes, key by key: deletions,
//	               last good versions, the clusters routes may name
//	plan.go        the Plan, and the one being built (sets and deletions)
//	topology.go    networks, gateways and tunnel certificates (rotation)
package assemble
