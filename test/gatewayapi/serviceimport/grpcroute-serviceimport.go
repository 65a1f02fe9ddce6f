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
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	pb "sigs.k8s.io/gateway-api/conformance/echo-basic/grpcechoserver"
	"sigs.k8s.io/gateway-api/conformance/utils/grpc"
	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
	confsuite "sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

func init() {
	ConformanceTests = append(ConformanceTests, GRPCRouteServiceImport)
}

// GRPCRouteServiceImport tests that a GRPCRoute to a ServiceImport exported from
// both clusters reaches the Gateway's own cluster's endpoints, the peer's
// when they go away, and its own again when they come back; a GRPCRoute
// naming a ServiceImport that does not exist says ResolvedRefs False,
// BackendNotFound.
var GRPCRouteServiceImport = confsuite.ConformanceTest{
	ShortName:   "GRPCRouteServiceImport",
	Description: "A GRPCRoute whose backendRef is a ServiceImport exported from two clusters prefers the Gateway's cluster and fails over to the other",
	Manifests:   []string{"tests/grpcroute-serviceimport.yaml"},
	Features: []features.FeatureName{
		features.SupportGateway,
		features.SupportGRPCRoute,
		SupportServiceImportBackend,
	},
	Test: func(t *testing.T, s *confsuite.ConformanceTestSuite) {
		applyPeer(t, s, "tests/grpcroute-serviceimport-peer.yaml")
		ns := confsuite.InfrastructureNamespace
		routeNN := types.NamespacedName{Name: "grpc-serviceimport", Namespace: ns}
		gwNN := types.NamespacedName{Name: "same-namespace", Namespace: ns}
		kubernetes.NamespacesMustBeReady(t, s.Client, s.TimeoutConfig, []string{ns})
		gwAddr := kubernetes.GatewayAndRoutesMustBeAccepted(t, s.Client, s.TimeoutConfig, s.ControllerName, kubernetes.NewGatewayRef(gwNN), &gwapiv1.GRPCRoute{}, true, routeNN)

		reaches := func(backend string) grpc.ExpectedResponse {
			return grpc.ExpectedResponse{EchoRequest: &pb.EchoRequest{}, Backend: backend, Namespace: ns}
		}
		t.Run("the Gateway's own cluster first", func(t *testing.T) {
			grpc.MakeRequestAndExpectEventuallyConsistentResponse(t, s.GRPCClient, s.TimeoutConfig, gwAddr, reaches("mcs-grpc-east"))
		})
		t.Run("the other cluster when its own has no endpoint left", func(t *testing.T) {
			scale(t, s.Client, s.TimeoutConfig, types.NamespacedName{Name: "mcs-grpc-east", Namespace: ns}, 0)
			grpc.MakeRequestAndExpectEventuallyConsistentResponse(t, s.GRPCClient, s.TimeoutConfig, gwAddr, reaches("mcs-grpc-west"))
		})
		t.Run("its own cluster again when its endpoints are back", func(t *testing.T) {
			scale(t, s.Client, s.TimeoutConfig, types.NamespacedName{Name: "mcs-grpc-east", Namespace: ns}, 1)
			grpc.MakeRequestAndExpectEventuallyConsistentResponse(t, s.GRPCClient, s.TimeoutConfig, gwAddr, reaches("mcs-grpc-east"))
		})
		t.Run("a ServiceImport that does not exist: BackendNotFound", func(t *testing.T) {
			missing := types.NamespacedName{Name: "grpc-serviceimport-missing", Namespace: ns}
			err := wait.PollUntilContextTimeout(context.Background(), s.TimeoutConfig.DefaultPollInterval, s.TimeoutConfig.RouteMustHaveParents, true, func(ctx context.Context) (bool, error) {
				var r gwapiv1.GRPCRoute
				if err := s.Client.Get(ctx, missing, &r); err != nil {
					return false, fmt.Errorf("error fetching GRPCRoute: %w", err)
				}
				for _, p := range r.Status.Parents {
					c := meta.FindStatusCondition(p.Conditions, string(gwapiv1.RouteConditionResolvedRefs))
					if string(p.ControllerName) == s.ControllerName && c != nil && c.Status == "False" && c.Reason == string(gwapiv1.RouteReasonBackendNotFound) && c.ObservedGeneration == r.Generation {
						return true, nil
					}
				}
				return false, nil
			})
			require.NoError(t, err, "GRPCRoute %s: no ResolvedRefs False, BackendNotFound", missing)
		})
	},
}
