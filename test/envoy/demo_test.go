package envoy

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
	"github.com/eastwest-dev/eastwest/test/netns"
)

// demoPods starts a backend for every endpoint address of the demo's
// EndpointSlices, inside ns, on the slice's ports: the port named like
// grpc serves gRPC, the first other one HTTP. Pods are named
// "<member>/<service>/<ip>".
func demoPods(t *testing.T, ns *netns.NS, dir string) {
	t.Helper()
	evs, _, err := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Scan()
	if err != nil {
		t.Fatal(err)
	}
	started := map[string]bool{}
	for _, ev := range evs {
		es, ok := ev.Object.(*discoveryv1.EndpointSlice)
		if ev.Op != event.OpUpsert || !ok {
			continue
		}
		httpPort, grpcPort := -1, 0
		for _, p := range es.Ports {
			switch {
			case p.Port == nil:
			case p.Name != nil && strings.Contains(*p.Name, "grpc"):
				grpcPort = int(*p.Port)
			case httpPort < 0:
				httpPort = int(*p.Port)
			}
		}
		for _, ep := range es.Endpoints {
			for _, ip := range ep.Addresses {
				if started[ip] || httpPort < 0 {
					continue
				}
				started[ip] = true
				ns.AddAddr(t, ip)
				name := fmt.Sprintf("%s/%s/%s", ev.Member, es.Labels[discoveryv1.LabelServiceName], ip)
				envoytest.StartBackendWith(t, ns.Listen, name, ip, httpPort, grpcPort, -1)
			}
		}
	}
}

// The demo ClusterSet, served as `make run` serves it, to real Envoys
// beside its pods (each endpoint address of the demo answers, inside a
// network namespace): east's east-west gateway sends cart to east's own
// pods; the Gateway shop/public sends /cart to cart and the rest to
// frontend, with the 10% share of the missing legacy-frontend answered
// 500, as the demo's comments say.
func TestDemoTraffic(t *testing.T) {
	const dir = "../../examples/clusterset"
	// The Envoys' namespace reaches the pods' namespace as a gateway pod
	// reaches other pods (a Gateway's listener port, 8080, is also a pod
	// port: they must not share a namespace, as they do not in a cluster).
	ns, pods := netns.New(t), netns.New(t)
	ns.Link(t, pods, "10.0.0.0/8")
	demoPods(t, pods, dir)
	app := cptest.StartWith(t, controlplane.Config{Dir: dir, XDSAddress: ns.HostIP + ":0"})
	gw := translate.View{Cluster: "east", Role: translate.RoleGateway}
	api := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "shop/public"}
	eg := envoytest.ForViewIn(t, ns, app, gw, "demo-gateway", true, nil)
	eg.WaitSynced(t, app, "demo-gateway", gw.String())
	ea := envoytest.ForViewIn(t, ns, app, api, "demo-public", false, nil)
	ea.WaitSynced(t, app, "demo-public", api.String())

	c := envoytest.HTTPClient(false)
	backend := func(port int, host, path string) (int, string) {
		t.Helper()
		resp, _, err := envoytest.Send(c, http.MethodGet, fmt.Sprintf("http://%s:%d%s", ns.NSIP, port, path), host, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("X-Backend")
	}
	for range 10 {
		if code, b := backend(int(translate.DefaultGatewayPort), "cart.shop.svc.clusterset.local", "/"); code != 200 || !strings.HasPrefix(b, "east/cart/") {
			t.Fatalf("east's gateway sent cart to %d %q, want one of east's cart pods", code, b)
		}
		if code, b := backend(8080, "www.shop.example.com", "/cart/items"); code != 200 || !strings.HasPrefix(b, "east/cart/") {
			t.Fatalf("shop/public sent /cart to %d %q, want east's cart", code, b)
		}
	}
	got := map[string]int{}
	for range 400 {
		code, b := backend(8080, "www.shop.example.com", "/")
		key := fmt.Sprint(code)
		if b != "" {
			key = strings.Join(strings.Split(b, "/")[:2], "/")
		}
		got[key]++
	}
	t.Logf("shop/public /: %v", got)
	if got["500"] < 20 || got["500"] > 60 || got["east/frontend"]+got["500"] != 400 {
		t.Errorf("shop/public / gave %v; want east's frontend with about 10%% answered 500 (legacy-frontend is missing)", got)
	}
}
