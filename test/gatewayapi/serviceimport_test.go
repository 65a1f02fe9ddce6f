package gatewayapi

import (
	"context"
	"io/fs"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/flags"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"

	"github.com/eastwest-dev/eastwest/test/cluster"
	"github.com/eastwest-dev/eastwest/test/gatewayapi/serviceimport"
)

// The ServiceImport conformance tests (test/gatewayapi/serviceimport,
// GEP-1748, written as the upstream suite's tests are) pass against class
// eastwest, run by the upstream suite's runner on a ClusterSet of two real
// clusters on one network: east, where the Gateway and its provisioned
// Envoy are (the suite's cluster), and west (the tests' peer). Routes to a
// ServiceImport reach east's endpoints first and fail over to west's
// (HTTP and gRPC), weights split traffic between a ServiceImport and a
// Service, and ResolvedRefs says BackendNotFound and RefNotPermitted.
func TestServiceImportConformance(t *testing.T) {
	images := make(chan string, 1)
	go func() { images <- cluster.GatewayConformanceImages(t) }()
	clusters := cluster.Start(t, "east", "west")
	cluster.Flat(t, clusters...)
	archive := <-images
	for _, c := range clusters {
		if err := c.Import(archive); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	provisioning(ctx, t, "eastwest", 1, clusters...)
	east, west := clusters[0], clusters[1]

	copts := suiteOptions(t)
	serviceimport.Peer = suiteClient(t, west.Config, copts)
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     "eastwest",
			CleanupBaseResources: true,
			CleanupTestResources: true,
			Mode:                 "default",
			TimeoutConfig:        conformanceconfig.DefaultTimeoutConfig(),
			SupportedFeatures: []features.FeatureName{features.SupportGateway, features.SupportHTTPRoute, features.SupportGRPCRoute,
				features.SupportReferenceGrant, serviceimport.SupportServiceImportBackend},
		},
		Client:        suiteClient(t, east.Config, copts),
		ClientOptions: copts,
		Clientset:     east.Client,
		RestConfig:    east.Config,
		ManifestFS:    []fs.FS{&serviceimport.Manifests},
		BaseManifests: serviceimport.BaseManifests,
	}
	flags.ApplyAll(&opts.ConfigurableOptions)
	cs, err := suite.NewConformanceTestSuite(opts)
	require.NoError(t, err)
	start := time.Now()
	t.Cleanup(func() { t.Logf("the ServiceImport tests ran %v", time.Since(start).Round(time.Second)) })
	cs.Setup(t, serviceimport.ConformanceTests)
	require.NoError(t, cs.Run(t, serviceimport.ConformanceTests))
}
