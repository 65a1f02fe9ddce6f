// Package gatewayapi turns Gateway API objects into what eastwest serves.
//
// Names: in eastwest a "gateway" alone is an east-west gateway (the Envoy
// that carries traffic between members' networks, translate.RoleGateway);
// everything about the Gateway API's Gateways is named gatewayapi (this
// package, translate.RoleGatewayAPI, assemble's gatewayAPI scheduling).
//
// It reads, per member cluster, GatewayClasses, Gateways, HTTPRoutes,
// GRPCRoutes, ReferenceGrants and the TLS Secrets listeners name (Store),
// and Build computes, purely, from those and the ClusterSet state:
//
//   - the Gateways this controller implements (GatewayClass controllerName
//     eastwest.io/gateway-controller), each as listeners by port with the
//     route rules attached to every hostname, in the spec's precedence
//     order, with resolved backends (GEP-1748: a backendRef may name a
//     ServiceImport);
//   - mesh routes (GAMMA, GEP-1426): routes whose parentRef is a
//     ServiceImport or Service shape what proxyless gRPC clients of that
//     member get for the service;
//   - the status of every GatewayClass, Gateway and route parent it owns,
//     with the spec's condition types and reasons and no clock (whoever
//     writes them sets lastTransitionTime).
//
// pkg/translate makes Envoy resources of the result; pkg/assemble's
// Assembler owns the Store (the controlplane Writer owns the Assembler)
// and calls Build for the members whose inputs or referenced services
// changed.
package gatewayapi
