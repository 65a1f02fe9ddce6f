package envoy

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

var shortTypes = map[string]string{
	"cds": resourcev3.ClusterType, "eds": resourcev3.EndpointType, "lds": resourcev3.ListenerType,
	"rds": resourcev3.RouteType, "sds": resourcev3.SecretType,
}

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

// startEnvoy starts an Envoy reading view v from app, from the shipped
// bootstrap of its role.
func startEnvoy(t *testing.T, app *controlplane.App, v translate.View, id string, delta bool, tls *envoytest.TLS, args ...string) *envoytest.Envoy {
	t.Helper()
	opts := envoytest.Options{Bootstrap: envoytest.Shipped("bootstrap.yaml"), NodeID: id, Cluster: string(v.Cluster), XDS: app.XDSAddr(), Delta: delta, TLS: tls, Args: args}
	if v.Role == translate.RoleGatewayAPI {
		opts.Bootstrap, opts.Gateway = envoytest.Shipped("gateway-api-bootstrap.yaml"), v.Gateway
	}
	return envoytest.Start(t, opts)
}

// waitSynced waits until Envoy has acknowledged the current version of
// every type it asked for and finished initializing; a NACK fails at once.
func waitSynced(t *testing.T, app *controlplane.App, e *envoytest.Envoy, id, view string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if e.Exited() {
			t.Fatalf("envoy exited:\n%s", e.LogTail(30))
		}
		last = "no stream yet"
		for _, c := range app.Tracker.Clients() {
			if c.NodeID != id {
				continue
			}
			if c.Error != "" {
				t.Fatalf("envoy %s refused: %s", id, c.Error)
			}
			synced := len(c.Types) >= 2 // CDS and LDS at least
			last = ""
			for typ, ts := range c.Types {
				if ts.State == cache.Nacked {
					t.Fatalf("envoy NACKed %s v%s: %s (resources %v)", typ, ts.Nacked, ts.NackError, slices.Sorted(maps.Keys(ts.NackedResources)))
				}
				current := app.Cache.Resources(view, typ).Version
				if ts.State != cache.Synced || ts.Acked != current {
					synced = false
					last += fmt.Sprintf(" %s:%s(acked %s, current %s)", typ, ts.State, ts.Acked, current)
				}
			}
			if synced && e.Ready() {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("envoy %s not synced after 30s:%s", id, last)
}

// checkAccepted checks that Envoy rejected nothing and holds exactly what
// the view serves.
func checkAccepted(t *testing.T, app *controlplane.App, e *envoytest.Envoy, view string) {
	t.Helper()
	if rejected, err := e.Rejected(); err != nil || len(rejected) > 0 {
		t.Errorf("envoy rejected updates: %v %v", rejected, err)
	}
	dumped, failed, err := e.ConfigDump()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) > 0 {
		t.Errorf("listeners that failed in envoy: %v", failed)
	}
	for short, typ := range shortTypes {
		var want []string
		for _, r := range app.Cache.Resources(view, typ).Resources {
			want = append(want, r.Name)
		}
		got := slices.Sorted(maps.Keys(dumped[short]))
		if !slices.Equal(got, want) {
			t.Errorf("%s: envoy holds %v, the view serves %v", short, got, want)
		}
	}
}

// Every Envoy-facing view of every golden case and of the demo is served
// by the real control plane to a real Envoy, over SotW and delta ADS:
// Envoy ACKs every type, rejects nothing, and holds exactly the resources
// the view serves. A resource Envoy would refuse cannot land.
func TestEnvoyAcceptsEveryView(t *testing.T) {
	dirs, _ := filepath.Glob("../../pkg/translate/testdata/*.in")
	cases := map[string]string{"examples-clusterset": "../../examples/clusterset"}
	for _, d := range dirs {
		cases[strings.TrimSuffix(filepath.Base(d), ".in")] = d
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			app := cptest.Start(t, cases[name])
			views := envoyViews(app)
			if len(views) == 0 {
				t.Skip("no Envoy-facing view") // a case of proxyless clients only
			}
			for _, v := range views {
				for _, delta := range []bool{false, true} {
					proto := map[bool]string{false: "sotw", true: "delta"}[delta]
					t.Run(strings.ReplaceAll(v.String(), "/", ".")+"/"+proto, func(t *testing.T) {
						id := fmt.Sprintf("%s-%s-%s", name, strings.ReplaceAll(v.String(), "/", "."), proto)
						e := startEnvoy(t, app, v, id, delta, nil)
						waitSynced(t, app, e, id, v.String())
						checkAccepted(t, app, e, v.String())
					})
				}
			}
		})
	}
}
