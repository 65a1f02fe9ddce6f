package gatewayapi

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	"sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/flags"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/test/cluster"
)

// The suite's own flags (-run-test, -skip-tests, -debug,
// -cleanup-base-resources, ...: sigs.k8s.io/gateway-api/conformance/utils/flags)
// apply to this run too; -report-dir is ours.
var reportDir = flag.String("report-dir", "", "write the Gateway API conformance report (gateway-api-report.yaml) into this folder (make conformance-report: docs/conformance)")

// The project as the report names it.
var implementation = confv1.Implementation{
	Organization: "eastwest-dev",
	Project:      "eastwest",
	URL:          "https://github.com/eastwest-dev/eastwest",
	Contact:      []string{"https://github.com/eastwest-dev/eastwest/issues"},
}

// The profiles eastwest claims.
var profiles = []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName, suite.GatewayGRPCConformanceProfileName}

// The upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, the version in go.mod),
// unmodified, passes against class eastwest on a real one-node cluster:
// the suite applies its manifests (Gateways, routes, the echo backends
// built here under the names it expects), eastwest provisions every
// Gateway's Envoy as a pod, and the suite sends its requests (HTTP, HTTPS
// with SNI, gRPC) from the test's namespace to each Gateway's load
// balancer address. The features tried are those the class advertises in
// status.supportedFeatures (gatewayapi.SupportedFeatures, GEP-2162), and
// every test of the GATEWAY-HTTP and GATEWAY-GRPC profiles they select
// passes: core and extended.
func TestGatewayAPIConformance(t *testing.T) {
	images := make(chan string, 1)
	go func() { images <- cluster.GatewayConformanceImages(t) }()
	c := cluster.Start(t, "east")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := c.Import(<-images); err != nil {
		t.Fatal(err)
	}
	provisioning(ctx, t, "eastwest", 1, c)

	copts := suiteOptions(t)
	cl := suiteClient(t, c.Config, copts)
	impl := implementation
	impl.Version = strings.TrimSpace(run("git", "-C", testkit.RepoRoot(), "describe", "--tags", "--always", "--dirty"))
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     "eastwest",
			CleanupBaseResources: true,
			CleanupTestResources: true,
			Mode:                 "default",
			TimeoutConfig:        conformanceconfig.DefaultTimeoutConfig(),
			Implementation:       impl,
			ConformanceProfiles:  profiles,
		},
		Client:        cl,
		ClientOptions: copts,
		Clientset:     c.Client,
		RestConfig:    c.Config,
		ManifestFS:    []fs.FS{&conformance.Manifests},
	}
	flags.ApplyAll(&opts.ConfigurableOptions)
	if opts.RunTest != "" {
		// One test (a person debugging): the suite reads no class status
		// then, so say the features here.
		opts.SupportedFeatures = gatewayapi.SupportedFeatures
	}
	// The class says what it supports once eastwest accepted it.
	testkit.Eventually(t, "GatewayClass eastwest Accepted, with its supportedFeatures", func() error {
		var gc gwapiv1.GatewayClass
		if err := cl.Get(ctx, ctrlclient.ObjectKey{Name: "eastwest"}, &gc); err != nil {
			return err
		}
		var got []features.FeatureName
		for _, f := range gc.Status.SupportedFeatures {
			got = append(got, features.FeatureName(f.Name))
		}
		if !meta.IsStatusConditionTrue(gc.Status.Conditions, string(gwapiv1.GatewayClassConditionStatusAccepted)) || !slices.Equal(got, gatewayapi.SupportedFeatures) {
			return fmt.Errorf("status %+v", gc.Status)
		}
		return nil
	})
	cs, err := suite.NewConformanceTestSuite(opts)
	require.NoError(t, err)
	// The suite's parallel tests run after this function returns: the
	// report is read when they are done, as upstream's runner does.
	start := time.Now()
	t.Cleanup(func() { checkReport(t, cs, opts.RunTest, start) })
	cs.Setup(t, tests.ConformanceTests)
	require.NoError(t, cs.Run(t, tests.ConformanceTests))
}

// checkReport reads the suite's report: every profile's core tests
// passed, and every extended test of the features claimed; it writes the
// report under -report-dir for a whole run.
func checkReport(t *testing.T, cs *suite.ConformanceTestSuite, runTest string, start time.Time) {
	t.Logf("the suite ran %v", time.Since(start).Round(time.Second))
	rep, err := cs.Report()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.ProfileReports {
		t.Logf("%s: core %s (%d passed, %d skipped, %d failed)", p.Name, p.Core.Result, p.Core.Passed, p.Core.Skipped, p.Core.Failed)
		if runTest == "" && (p.Core.Result != confv1.Success || p.Core.Passed == 0) {
			t.Errorf("%s core: %s, failed %v, skipped %v", p.Name, p.Core.Result, p.Core.FailedTests, p.Core.SkippedTests)
		}
		if p.Extended != nil {
			t.Logf("%s: extended %s (%d passed, %d skipped, %d failed), supported %v", p.Name, p.Extended.Result, p.Extended.Passed, p.Extended.Skipped, p.Extended.Failed, p.Extended.SupportedFeatures)
			if p.Extended.Failed > 0 {
				t.Errorf("%s extended: %s, failed %v", p.Name, p.Extended.Result, p.Extended.FailedTests)
			}
		}
	}
	if len(rep.ProfileReports) != len(profiles) {
		t.Errorf("%d profile reports, want %v", len(rep.ProfileReports), profiles)
	}
	if *reportDir != "" && runTest == "" {
		b, err := yaml.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(*reportDir, "gateway-api-report.yaml")
		if err := os.WriteFile(out, b, 0o644); err != nil { //nolint:gosec // a report for the docs
			t.Fatal(err)
		}
		t.Logf("report written to %s", out)
	}
}

// setLogger gives controller-runtime, which the suite uses, its logger
// once.
var setLogger sync.Once

// suiteOptions are the suite's client options: a scheme of its own with
// the Gateway API's and the CRDs' types. The default scheme is client-go's
// global, which the control plane in this process decodes with while the
// suite would add its types to it (upstream's runner does, alone in its
// process); the suite makes clients of its own with these options too.
func suiteOptions(t *testing.T) ctrlclient.Options {
	t.Helper()
	setLogger.Do(func() { log.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true))) })
	sch := runtime.NewScheme()
	for _, install := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha3.Install, v1alpha2.Install, v1beta1.Install, gwapiv1.Install, apiextensionsv1.AddToScheme} {
		require.NoError(t, install(sch))
	}
	return ctrlclient.Options{Scheme: sch}
}

// suiteClient is a client of the suite's kind (controller-runtime's) for
// a cluster.
func suiteClient(t *testing.T, cfg *rest.Config, opts ctrlclient.Options) ctrlclient.Client {
	t.Helper()
	cl, err := ctrlclient.New(cfg, opts)
	require.NoError(t, err)
	return cl
}

func run(name string, args ...string) string {
	b, _ := exec.Command(name, args...).Output() //nolint:gosec // fixed commands
	return string(b)
}
