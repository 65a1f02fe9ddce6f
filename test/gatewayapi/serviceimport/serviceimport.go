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

// Package serviceimport holds Gateway API conformance tests for routes whose
// backendRefs name a ServiceImport (GEP-1748: a Multi-Cluster Services
// ServiceImport, group multicluster.x-k8s.io, as a backend), written as
// the upstream suite's tests are (sigs.k8s.io/gateway-api/conformance/tests)
// and run by its runner, so that they can be proposed there as they are.
//
// They need a ClusterSet of two clusters on one network (pods of either
// reach pods of the other, as the MCS API's conformance suite assumes):
// the suite's cluster, where the Gateway is, and a peer, which the runner
// gives the tests in Peer. Each test's manifests apply to the suite's
// cluster; its "-peer" manifests to the peer.
package serviceimport

import (
	"context"
	"embed"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/kubernetes"
	confsuite "sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// SupportServiceImportBackend is the feature these tests prove: routes'
// backendRefs naming a ServiceImport.
const SupportServiceImportBackend features.FeatureName = "ServiceImportBackend"

// Manifests are the tests' manifests, and the base they run on
// (base/manifests.yaml: the suite's namespaces, the same-namespace
// Gateway, infra-backend-v1).
//
//go:embed base/*.yaml tests/*.yaml
var Manifests embed.FS

// BaseManifests is the base's path in Manifests.
const BaseManifests = "base/manifests.yaml"

// Peer is a client of the ClusterSet's other cluster, set by the runner
// before the tests run.
var Peer client.Client

// ConformanceTests are the tests of this package.
var ConformanceTests []confsuite.ConformanceTest

// applyPeer applies manifests of the tests to the peer cluster, removed
// when the test ends if the suite cleans up. The namespaces they go in
// (the suite's, as ServiceImports exist in the namespaces of the same
// name in every cluster) are made first, and kept for the next tests.
func applyPeer(t *testing.T, s *confsuite.ConformanceTestSuite, manifest string) {
	t.Helper()
	require.NotNil(t, Peer, "no peer cluster: the runner must set serviceimport.Peer")
	ctx, cancel := context.WithTimeout(context.Background(), s.TimeoutConfig.CreateTimeout)
	defer cancel()
	for _, name := range []string{confsuite.InfrastructureNamespace, confsuite.AppBackendNamespace} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := Peer.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			require.NoError(t, err, "creating namespace %s in the peer cluster", name)
		}
	}
	s.Applier.MustApplyWithCleanup(t, Peer, s.TimeoutConfig, manifest, s.Cleanup)
}

// scale sets a Deployment's replicas in the cluster c.
func scale(t *testing.T, c client.Client, timeout config.TimeoutConfig, nn types.NamespacedName, replicas int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout.CreateTimeout)
	defer cancel()
	var d appsv1.Deployment
	require.NoError(t, c.Get(ctx, nn, &d))
	d.Spec.Replicas = &replicas
	require.NoError(t, c.Update(ctx, &d))
	if replicas > 0 {
		kubernetes.NamespacesMustBeReady(t, c, timeout, []string{nn.Namespace})
	}
}
