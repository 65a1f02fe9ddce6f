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
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"sigs.k8s.io/gateway-api/conformance/utils/http"
	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
	confsuite "sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/conformance/utils/weight"
	"sigs.k8s.io/gateway-api/pkg/features"
)

func init() {
	ConformanceTests = append(ConformanceTests, HTTPRouteServiceImportWeight)
}

// HTTPRouteServiceImportWeight tests that an HTTPRoute's weights split its traffic
// between a ServiceImport (whose endpoints are all in the other cluster)
// and a Service of the Gateway's cluster.
var HTTPRouteServiceImportWeight = confsuite.ConformanceTest{
	ShortName:   "HTTPRouteServiceImportWeight",
	Description: "An HTTPRoute splits its traffic by weight between a ServiceImport and a Service",
	Manifests:   []string{"tests/httproute-serviceimport-weight.yaml"},
	Features: []features.FeatureName{
		features.SupportGateway,
		features.SupportHTTPRoute,
		SupportServiceImportBackend,
	},
	Test: func(t *testing.T, s *confsuite.ConformanceTestSuite) {
		applyPeer(t, s, "tests/httproute-serviceimport-weight-peer.yaml")
		ns := confsuite.InfrastructureNamespace
		routeNN := types.NamespacedName{Name: "serviceimport-weight", Namespace: ns}
		gwNN := types.NamespacedName{Name: "same-namespace", Namespace: ns}
		gwAddr := kubernetes.GatewayAndHTTPRoutesMustBeAccepted(t, s.Client, s.TimeoutConfig, s.ControllerName, kubernetes.NewGatewayRef(gwNN), routeNN)
		kubernetes.HTTPRouteMustHaveResolvedRefsConditionsTrue(t, s.Client, s.TimeoutConfig, routeNN, gwNN)

		expected := http.ExpectedResponse{Request: http.Request{Path: "/"}, Response: http.Response{StatusCodes: []int{200}}, Namespace: ns}
		// The route answers before the distribution is measured.
		http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, expected)
		sender := weight.NewFunctionBasedSender(func() (string, error) {
			e := expected
			if err := http.AddEntropy(&e); err != nil {
				return "", fmt.Errorf("error adding entropy: %w", err)
			}
			req := http.MakeRequest(t, &e, gwAddr, "HTTP", "http")
			cReq, cRes, err := s.RoundTripper.CaptureRoundTrip(req)
			if err != nil {
				return "", fmt.Errorf("failed to roundtrip request: %w", err)
			}
			if err := http.CompareRoundTrip(t, &req, cReq, cRes, e); err != nil {
				return "", fmt.Errorf("response expectation failed for request: %w", err)
			}
			return cReq.Pod, nil
		})
		want := map[string]float64{"mcs-remote-west": 0.5, "infra-backend-v1": 0.5}
		for i := range weight.MaxTestRetries {
			err := weight.TestWeightedDistribution(sender, want)
			if err == nil {
				return
			}
			t.Logf("Traffic distribution test failed (%d/%d): %s", i+1, weight.MaxTestRetries, err)
		}
		t.Fatal("Weighted distribution tests failed")
	},
}
