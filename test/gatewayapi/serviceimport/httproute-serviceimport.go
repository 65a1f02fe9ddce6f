/*
Copyright 2026 The Kubernetes Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package serviceimport

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"sigs.k8s.io/gateway-api/conformance/utils/http"
	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
	confsuite "sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

func init() {
	ConformanceTests = append(ConformanceTests, HTTPRouteServiceImport)
}

// HTTPRouteServiceImport tests that an HTTPRoute to a ServiceImport exported from
// both clusters reaches the Gateway's own cluster's endpoints while it has
// ready ones, the peer's when they go away, and its own again when they
// come back.
var HTTPRouteServiceImport = confsuite.ConformanceTest{
	ShortName:   "HTTPRouteServiceImport",
	Description: "An HTTPRoute whose backendRef is a ServiceImport exported from two clusters prefers the Gateway's cluster and fails over to the other",
	Manifests:   []string{"tests/httproute-serviceimport.yaml"},
	Features: []features.FeatureName{
		features.SupportGateway,
		features.SupportHTTPRoute,
		SupportServiceImportBackend,
	},
	Test: func(t *testing.T, s *confsuite.ConformanceTestSuite) {
		applyPeer(t, s, "tests/httproute-serviceimport-peer.yaml")
		ns := confsuite.InfrastructureNamespace
		routeNN := types.NamespacedName{Name: "serviceimport", Namespace: ns}
		gwNN := types.NamespacedName{Name: "same-namespace", Namespace: ns}
		kubernetes.NamespacesMustBeReady(t, s.Client, s.TimeoutConfig, []string{ns})
		gwAddr := kubernetes.GatewayAndHTTPRoutesMustBeAccepted(t, s.Client, s.TimeoutConfig, s.ControllerName, kubernetes.NewGatewayRef(gwNN), routeNN)
		kubernetes.HTTPRouteMustHaveResolvedRefsConditionsTrue(t, s.Client, s.TimeoutConfig, routeNN, gwNN)

		reaches := func(backend string) http.ExpectedResponse {
			return http.ExpectedResponse{Request: http.Request{Path: "/"}, Backend: backend, Namespace: ns}
		}
		t.Run("the Gateway's own cluster first", func(t *testing.T) {
			http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, reaches("mcs-echo-east"))
		})
		t.Run("the other cluster when its own has no endpoint left", func(t *testing.T) {
			scale(t, s.Client, s.TimeoutConfig, types.NamespacedName{Name: "mcs-echo-east", Namespace: ns}, 0)
			http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, reaches("mcs-echo-west"))
		})
		t.Run("its own cluster again when its endpoints are back", func(t *testing.T) {
			scale(t, s.Client, s.TimeoutConfig, types.NamespacedName{Name: "mcs-echo-east", Namespace: ns}, 1)
			http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, reaches("mcs-echo-east"))
		})
	},
}
