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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/http"
	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
	confsuite "sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

func init() {
	ConformanceTests = append(ConformanceTests, HTTPRouteServiceImportResolvedRefs)
}

// HTTPRouteServiceImportResolvedRefs tests that a route naming a ServiceImport that
// does not exist says ResolvedRefs False, BackendNotFound; one naming a
// ServiceImport of another namespace says RefNotPermitted until a
// ReferenceGrant there allows it, and then reaches it.
var HTTPRouteServiceImportResolvedRefs = confsuite.ConformanceTest{
	ShortName:   "HTTPRouteServiceImportResolvedRefs",
	Description: "An HTTPRoute reports ResolvedRefs for a missing ServiceImport and for one of another namespace without a ReferenceGrant",
	Manifests:   []string{"tests/httproute-serviceimport-resolvedrefs.yaml"},
	Features: []features.FeatureName{
		features.SupportGateway,
		features.SupportHTTPRoute,
		features.SupportReferenceGrant,
		SupportServiceImportBackend,
	},
	Test: func(t *testing.T, s *confsuite.ConformanceTestSuite) {
		applyPeer(t, s, "tests/httproute-serviceimport-resolvedrefs-peer.yaml")
		ns := confsuite.InfrastructureNamespace
		gwNN := types.NamespacedName{Name: "same-namespace", Namespace: ns}
		missing := types.NamespacedName{Name: "serviceimport-missing", Namespace: ns}
		cross := types.NamespacedName{Name: "serviceimport-cross-namespace", Namespace: ns}
		gwAddr := kubernetes.GatewayAndHTTPRoutesMustBeAccepted(t, s.Client, s.TimeoutConfig, s.ControllerName, kubernetes.NewGatewayRef(gwNN), missing, cross)

		t.Run("a ServiceImport that does not exist: BackendNotFound", func(t *testing.T) {
			kubernetes.HTTPRouteMustHaveCondition(t, s.Client, s.TimeoutConfig, missing, gwNN, metav1.Condition{
				Type: string(gwapiv1.RouteConditionResolvedRefs), Status: metav1.ConditionFalse, Reason: string(gwapiv1.RouteReasonBackendNotFound),
			})
			http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, http.ExpectedResponse{
				Request: http.Request{Path: "/missing"}, Response: http.Response{StatusCodes: []int{500}},
			})
		})
		t.Run("a ServiceImport of another namespace without a ReferenceGrant: RefNotPermitted", func(t *testing.T) {
			kubernetes.HTTPRouteMustHaveCondition(t, s.Client, s.TimeoutConfig, cross, gwNN, metav1.Condition{
				Type: string(gwapiv1.RouteConditionResolvedRefs), Status: metav1.ConditionFalse, Reason: string(gwapiv1.RouteReasonRefNotPermitted),
			})
			http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, http.ExpectedResponse{
				Request: http.Request{Path: "/other"}, Response: http.Response{StatusCodes: []int{500}},
			})
		})
		t.Run("with a ReferenceGrant: resolved, and reached", func(t *testing.T) {
			s.Applier.MustApplyWithCleanup(t, s.Client, s.TimeoutConfig, "tests/httproute-serviceimport-referencegrant.yaml", s.Cleanup)
			kubernetes.HTTPRouteMustHaveResolvedRefsConditionsTrue(t, s.Client, s.TimeoutConfig, cross, gwNN)
			http.MakeRequestAndExpectEventuallyConsistentResponse(t, s.RoundTripper, s.TimeoutConfig, gwAddr, http.ExpectedResponse{
				Request: http.Request{Path: "/other"}, Backend: "mcs-other-west", Namespace: confsuite.AppBackendNamespace,
			})
		})
	},
}
