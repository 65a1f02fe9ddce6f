package envoytest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/netns"
)

var shortTypes = map[string]string{
	"cds": resourcev3.ClusterType, "eds": resourcev3.EndpointType, "lds": resourcev3.ListenerType,
	"rds": resourcev3.RouteType, "sds": resourcev3.SecretType,
}

// ForView starts an Envoy reading view v from app, from the shipped
// bootstrap of its role.
func ForView(t testing.TB, app *controlplane.App, v translate.View, id string, delta bool, tls *TLS, args ...string) *Envoy {
	t.Helper()
	return ForViewIn(t, nil, app, v, id, delta, tls, args...)
}

// ForViewIn is ForView inside a network namespace (nil: the test's).
func ForViewIn(t testing.TB, ns *netns.NS, app *controlplane.App, v translate.View, id string, delta bool, tls *TLS, args ...string) *Envoy {
	t.Helper()
	opts := Options{Bootstrap: Shipped("bootstrap.yaml"), NodeID: id, Cluster: string(v.Cluster), Zone: v.Zone, XDS: app.XDSAddr(), Delta: delta, TLS: tls, Args: args, NetNS: ns}
	if v.Role == translate.RoleGatewayAPI {
		opts.Bootstrap, opts.Gateway = Shipped("gateway-api-bootstrap.yaml"), v.Gateway
	}
	return Start(t, opts)
}

// WaitSynced waits until Envoy has acknowledged the current version of
// every type it asked for and finished initializing; a NACK fails at once.
func (e *Envoy) WaitSynced(t testing.TB, app *controlplane.App, id, view string) {
	t.Helper()
	e.WaitSyncedWithin(t, app, id, view, 30*time.Second)
}

// WaitSyncedWithin is WaitSynced with another deadline.
func (e *Envoy) WaitSyncedWithin(t testing.TB, app *controlplane.App, id, view string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
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
			// A node may wait (for the control plane's first publish,
			// say) and then be served: an error is a reason to wait.
			synced := len(c.Types) >= 2 && c.Error == "" // CDS and LDS at least
			last = c.Error
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
	t.Fatalf("envoy %s not synced after %v:%s", id, within, last)
}

// CheckAccepted checks that Envoy rejected nothing and holds exactly what
// the view serves.
func (e *Envoy) CheckAccepted(t testing.TB, app *controlplane.App, view string) {
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
	clusters := map[string]bool{}
	for _, r := range app.Cache.Resources(view, resourcev3.ClusterType).Resources {
		clusters[r.Name] = true
	}
	for short, typ := range shortTypes {
		var want []string
		for _, r := range app.Cache.Resources(view, typ).Resources {
			want = append(want, r.Name)
		}
		if short == "eds" {
			// A served cluster that is not EDS (a DNS cluster of
			// gateways' host names) has its endpoints in the dump too.
			for name := range dumped[short] {
				if clusters[name] && !slices.Contains(want, name) {
					delete(dumped[short], name)
				}
			}
		}
		if short == "sds" {
			for _, name := range e.fileSecrets {
				delete(dumped[short], name)
			}
		}
		got := slices.Sorted(maps.Keys(dumped[short]))
		if !slices.Equal(got, want) {
			t.Errorf("%s: envoy holds %v, the view serves %v", short, got, want)
		}
	}
}
