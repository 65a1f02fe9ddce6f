package gatewayapi

import (
	"slices"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// SupportedFeatures are the Gateway API features eastwest implements
// (GEP-2162), in the names of the upstream conformance suite: every
// accepted GatewayClass of eastwest lists them in its
// status.supportedFeatures, and the conformance run (test/gatewayapi)
// reads them from there, so that what a class says it supports is what
// the suite proved. A feature is added here only with its conformance
// tests passing.
var SupportedFeatures = sortedFeatures(
	// Core: the GATEWAY-HTTP and GATEWAY-GRPC profiles.
	features.SupportGateway,
	features.SupportHTTPRoute,
	features.SupportGRPCRoute,
	features.SupportReferenceGrant,
)

func sortedFeatures(names ...features.FeatureName) []features.FeatureName {
	slices.Sort(names)
	return slices.Compact(names)
}

// supportedFeatures is SupportedFeatures as a GatewayClass status says it.
func supportedFeatures() []gwapiv1.SupportedFeature {
	out := make([]gwapiv1.SupportedFeature, len(SupportedFeatures))
	for i, f := range SupportedFeatures {
		out[i] = gwapiv1.SupportedFeature{Name: gwapiv1.FeatureName(f)}
	}
	return out
}
