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
	// Extended: each passes the suite's tests of it. Not yet:
	// GatewayHTTPListenerIsolation (a request matches only the most
	// specific listener's routes), HTTPRouteBackendRequestHeaderModification
	// (filters on a backendRef), HTTPRouteBackendProtocolWebSocket
	// (upgrades), GatewayStaticAddresses and GatewayAddressEmpty (eastwest
	// assigns no address), HTTPRouteCORS, and the experimental channel's.
	features.SupportGatewayPort8080,
	features.SupportGatewayInfrastructure,
	features.SupportHTTPRouteQueryParamMatching,
	features.SupportHTTPRouteMethodMatching,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRoutePortRedirect,
	features.SupportHTTPRouteSchemeRedirect,
	features.SupportHTTPRoutePathRedirect,
	features.SupportHTTPRouteHostRewrite,
	features.SupportHTTPRoutePathRewrite,
	features.SupportHTTPRouteRequestMirror,
	features.SupportHTTPRouteRequestMultipleMirrors,
	features.SupportHTTPRouteRequestPercentageMirror,
	features.SupportHTTPRouteRequestTimeout,
	features.SupportHTTPRouteBackendTimeout,
	features.SupportHTTPRouteParentRefPort,
	features.SupportHTTPRouteBackendProtocolH2C,
	features.SupportHTTPRouteNamedRouteRule,
	features.SupportHTTPRoute303RedirectStatusCode,
	features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportGRPCRouteNamedRouteRule,
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
