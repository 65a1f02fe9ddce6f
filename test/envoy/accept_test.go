package envoy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// Every shipped bootstrap passes `envoy --mode validate`, with its xDS
// connection over mutual TLS as shipped (only the certificate files are
// the test's).
func TestShippedBootstrapsValidate(t *testing.T) {
	ca := cptest.NewCA(t)
	client := ca.Client(t, "spiffe://eastwest.io/clusterset/demo/cluster/east/role/gateway")
	for _, name := range []string{"bootstrap.yaml", "gateway-api-bootstrap.yaml"} {
		t.Run(name, func(t *testing.T) {
			boot, err := envoytest.Bootstrap(envoytest.Options{Bootstrap: envoytest.Shipped(name),
				TLS: &envoytest.TLS{CertFile: client.CertFile, KeyFile: client.KeyFile, CAFile: ca.File}})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(path, boot, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := envoytest.Validate(t, path, "pod-1", "east"); err != nil {
				t.Error(err)
			}
		})
	}
}

// envoyViews are the views of a running control plane that Envoys read.
func envoyViews(app *controlplane.App) []translate.View {
	var out []translate.View
	for _, v := range app.Writer.Snapshot().Views {
		if v.Role == translate.RoleGateway || v.Role == translate.RoleGatewayAPI {
			out = append(out, v)
		}
	}
	return out
}

// Every Envoy-facing view of every golden case and of the demo is served
// by the real control plane to a real Envoy, over SotW and delta ADS:
// Envoy ACKs every type, rejects nothing, and holds exactly the resources
// the view serves. A resource Envoy would refuse cannot land.
func TestEnvoyAcceptsEveryView(t *testing.T) {
	dirs := testkit.Cases(t, "../../testdata/*.in")
	cases := map[string]string{"examples-clusterset": "../../examples/clusterset"}
	for _, d := range dirs {
		cases[strings.TrimSuffix(filepath.Base(d), ".in")] = d
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			// Every view's listeners on an address of this test's own:
			// the goldens' ports (15080, relay ports) are other tests'
			// and make run-envoy's too.
			cfg := controlplane.Config{Dir: cases[name]}
			cfg.Writer.ListenAddress = testkit.Loopback(t)
			app := cptest.StartWith(t, cfg)
			views := envoyViews(app)
			if len(views) == 0 {
				t.Fatal("no Envoy-facing view: every member has a gateway view")
			}
			for _, v := range views {
				for _, delta := range []bool{false, true} {
					proto := map[bool]string{false: "sotw", true: "delta"}[delta]
					t.Run(strings.ReplaceAll(v.String(), "/", ".")+"/"+proto, func(t *testing.T) {
						id := fmt.Sprintf("%s-%s-%s", name, strings.ReplaceAll(v.String(), "/", "."), proto)
						e := envoytest.ForView(t, app, v, id, delta, nil)
						e.WaitSynced(t, app, id, v.String())
						e.CheckAccepted(t, app, v.String())
					})
				}
			}
		})
	}
}

// Every listener of every Envoy-facing view of every golden case is
// accepted by Envoy with none of the clusters it names. Over ADS a
// listener can reach Envoy before the clusters it names (Envoy withholds
// its CDS ACK while it warms clusters, and listeners go out meanwhile); a
// listener that needed them then would be rejected, and stay rejected
// until the listeners changed again: a gateway's tunnel or relay
// listener, with an inline route that Envoy validates against the known
// clusters by default, was lost so in a real cluster, and one network's
// pods could not reach another's. `envoy --mode validate` of the view's
// bootstrap with its listeners added refuses what LDS would.
func TestListenersNeedNoClusterFirst(t *testing.T) {
	dirs := testkit.Cases(t, "../../testdata/*.in")
	for _, d := range dirs {
		name := strings.TrimSuffix(filepath.Base(d), ".in")
		t.Run(name, func(t *testing.T) {
			app := cptest.Start(t, d)
			for _, v := range envoyViews(app) {
				listeners := app.Cache.Resources(v.String(), resourcev3.ListenerType).Resources
				if len(listeners) == 0 {
					continue
				}
				shipped := "bootstrap.yaml"
				if v.Role == translate.RoleGatewayAPI {
					shipped = "gateway-api-bootstrap.yaml"
				}
				boot, err := envoytest.Bootstrap(envoytest.Options{Bootstrap: envoytest.Shipped(shipped)})
				if err != nil {
					t.Fatal(err)
				}
				var b map[string]any
				if err := json.Unmarshal(boot, &b); err != nil {
					t.Fatal(err)
				}
				static, _ := b["static_resources"].(map[string]any)
				var ls []any
				for _, l := range listeners {
					j, err := protojson.Marshal(l.Message)
					if err != nil {
						t.Fatal(err)
					}
					var m any
					if err := json.Unmarshal(j, &m); err != nil {
						t.Fatal(err)
					}
					ls = append(ls, m)
				}
				static["listeners"] = ls
				out, err := json.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), "bootstrap.json")
				if err := os.WriteFile(path, out, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := envoytest.Validate(t, path, "validate", string(v.Cluster)); err != nil {
					t.Errorf("%s: %d listeners without their clusters: %v", v, len(listeners), err)
				}
			}
		})
	}
}
