package envoy

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// gatewayPort is the east-west gateway listener port in these tests.
const gatewayPort = 15080

// memberIP is pod n of member m: one loopback range per member cluster.
func memberIP(m, n int) string { return fmt.Sprintf("127.0.%d.%d", m, n) }

// waitFor sends requests until check accepts an answer
// (testkit.Eventually: the last answer is the failure's).
func waitFor(t testing.TB, what string, try func() (string, error), check func(string) bool) {
	t.Helper()
	testkit.Eventually(t, what, func() error {
		got, err := try()
		if err == nil && check(got) {
			return nil
		}
		return fmt.Errorf("last answer %q (error: %w)", got, err)
	})
}

// count sends n requests and counts the answering backends.
func count(t testing.TB, n int, try func() (string, error)) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		got, err := try()
		if err != nil {
			t.Fatal(err)
		}
		out[strings.Fields(got)[0]]++
	}
	return out
}

// An east-west gateway (role gateway) of member east, a real Envoy, sends
// real traffic by ClusterSet host name: to east's own endpoints first,
// over HTTP/1.1, HTTP/2 and gRPC; a port only west exposes goes to west;
// when east's endpoints stop being ready, traffic fails over to the
// other members, weighted by their ready endpoints, and comes back; an
// unknown host gets a 404.
func TestEastWestGatewayTraffic(t *testing.T) {
	east := envoytest.StartBackend(t, "east/web-0", memberIP(1, 1), 0, 0, -1)
	west := envoytest.StartBackend(t, "west/web-0", memberIP(2, 1), 0, 0, 0)
	var central []*envoytest.Backend
	for i := range 3 {
		port := 0
		if i > 0 {
			port = central[0].HTTPPort
		}
		central = append(central, envoytest.StartBackend(t, fmt.Sprintf("central/web-%d", i), memberIP(3, i+1), port, 0, -1))
	}
	dir := t.TempDir()
	web := func(b *envoytest.Backend, extra ...string) []string {
		return append([]string{fmt.Sprintf("http:80:%d", b.HTTPPort)}, extra...)
	}
	writeFile(t, filepath.Join(dir, "east", "cluster.yaml"), fixture.ClusterYAML("east"))
	writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", web(east), east.IP))
	writeFile(t, filepath.Join(dir, "east", "rpc.yaml"), fixture.ServiceYAML("shop", "rpc", []string{fmt.Sprintf("grpc:9090:%d:grpc", east.GRPCPort)}, east.IP))
	writeFile(t, filepath.Join(dir, "west", "cluster.yaml"), fixture.ClusterYAML("west"))
	writeFile(t, filepath.Join(dir, "west", "web.yaml"), fixture.ServiceYAML("shop", "web", web(west, fmt.Sprintf("alt:8080:%d", west.AltPort)), west.IP))
	writeFile(t, filepath.Join(dir, "west", "rpc.yaml"), fixture.ServiceYAML("shop", "rpc", []string{fmt.Sprintf("grpc:9090:%d:grpc", west.GRPCPort)}, west.IP))
	writeFile(t, filepath.Join(dir, "central", "cluster.yaml"), fixture.ClusterYAML("central"))
	writeFile(t, filepath.Join(dir, "central", "web.yaml"), fixture.ServiceYAML("shop", "web", web(central[0]), central[0].IP, central[1].IP, central[2].IP))

	cfg := controlplane.Config{Dir: dir}
	cfg.Writer.GatewayPort = gatewayPort
	cfg.Writer.ListenAddress = testkit.Loopback(t, gatewayPort)
	app := cptest.StartWith(t, cfg)
	v := translate.View{Cluster: "east", Role: translate.RoleGateway}
	e := envoytest.ForView(t, app, v, "east-gateway", true, nil)
	e.WaitSynced(t, app, "east-gateway", v.String())
	addr := fmt.Sprintf("%s:%d", cfg.Writer.ListenAddress, gatewayPort)

	h1, h2 := envoytest.HTTPClient(false), envoytest.HTTPClient(true)
	tests := map[string]struct {
		client *http.Client
		host   string
		code   int
		body   string
	}{
		"HTTP/1.1 to the local member":    {h1, "web.shop.svc.clusterset.local", 200, "east/web-0 HTTP/1.1"},
		"HTTP/2 to the local member":      {h2, "web.shop.svc.clusterset.local:80", 200, "east/web-0 HTTP/1.1"},
		"a port only west exposes":        {h1, "web.shop.svc.clusterset.local:8080", 200, "west/web-0 HTTP/1.1"},
		"an unknown host":                 {h1, "nope.shop.svc.clusterset.local", 404, "eastwest gateway: no exported service answers to this host"},
		"an unknown port of a known host": {h1, "web.shop.svc.clusterset.local:81", 404, "eastwest gateway: no exported service answers to this host"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for range 5 {
				code, body, err := envoytest.Get(tc.client, addr, tc.host)
				if err != nil || code != tc.code || !strings.HasPrefix(body, tc.body) {
					t.Fatalf("GET Host %s: %d %q %v, want %d %q", tc.host, code, body, err, tc.code, tc.body)
				}
			}
		})
	}

	t.Run("gRPC to the local member", func(t *testing.T) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("rpc.shop.svc.clusterset.local:9090"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil || resp.GetServerId() != "east/web-0" {
			t.Fatalf("UnaryCall: %v %v, want east/web-0", resp.GetServerId(), err)
		}
	})

	try := func() (string, error) {
		_, body, err := envoytest.Get(h1, addr, "web.shop.svc.clusterset.local")
		return body, err
	}
	// East's endpoint stops being ready: the other members take the
	// traffic, in proportion to their ready endpoints (1 in west, 3 in
	// central).
	writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", web(east), east.IP+"!"))
	waitFor(t, "failover away from east", try, func(s string) bool { return !strings.HasPrefix(s, "east/") })
	got := count(t, 400, try)
	westShare := float64(got["west/web-0"]) / 400
	if got["east/web-0"] > 0 || westShare < 0.15 || westShare > 0.35 {
		t.Errorf("after east failed: %v; want none to east, about 1/4 to west and 3/4 to central", got)
	}
	// East is ready again: its traffic comes back.
	writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", web(east), east.IP))
	waitFor(t, "failback to east", try, func(s string) bool { return strings.HasPrefix(s, "east/") })
	if got := count(t, 50, try); got["east/web-0"] != 50 {
		t.Errorf("after east came back: %v, want all to east", got)
	}

	// East's pod dies while the control plane still sees it ready (as
	// when east's apiserver is unreachable and its last state is kept).
	// Requests that meet the refused connection are retried on another
	// member, so none fails; outlier detection then ejects the endpoint
	// and traffic stops trying it.
	east.StopHTTP()
	start := time.Now()
	failed := 0
	for range 200 {
		code, body, err := envoytest.Get(h1, addr, "web.shop.svc.clusterset.local")
		if err != nil || code != 200 || strings.HasPrefix(body, "east/") {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of 200 requests failed after east's endpoint died; the retry should have moved them", failed)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stats, err := e.Stats()
		if err == nil && stats["cluster."+translate.StatName(mcs.ServiceKey{Namespace: "shop", Name: "web"}, 80)+".outlier_detection.ejections_active"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead endpoint was not ejected within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("a dead local endpoint: 200 requests, %d failed; ejected %v after it died", failed, time.Since(start).Round(time.Millisecond))
}

// A steady stream of requests through an east-west gateway while the
// control plane stops and a new one starts on the same address: not one
// request fails, Envoy keeps serving its last config while the control
// plane is away, and resyncs with the new one.
func TestControlPlaneRestartUnderLoad(t *testing.T) {
	east := envoytest.StartBackend(t, "east/web-0", memberIP(1, 1), 0, 0, -1)
	west := envoytest.StartBackend(t, "west/web-0", memberIP(2, 1), 0, 0, -1)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "east", "cluster.yaml"), fixture.ClusterYAML("east"))
	writeFile(t, filepath.Join(dir, "east", "web.yaml"), fixture.ServiceYAML("shop", "web", []string{fmt.Sprintf("http:80:%d", east.HTTPPort)}, east.IP))
	writeFile(t, filepath.Join(dir, "west", "cluster.yaml"), fixture.ClusterYAML("west"))
	writeFile(t, filepath.Join(dir, "west", "web.yaml"), fixture.ServiceYAML("shop", "web", []string{fmt.Sprintf("http:80:%d", west.HTTPPort)}, west.IP))
	cfg := controlplane.Config{Dir: dir}
	cfg.Writer.GatewayPort = gatewayPort
	cfg.Writer.ListenAddress = testkit.Loopback(t, gatewayPort)
	app, stop := cptest.Run(t, cfg)
	v := translate.View{Cluster: "east", Role: translate.RoleGateway}
	e := envoytest.ForView(t, app, v, "east-gateway", true, nil)
	e.WaitSynced(t, app, "east-gateway", v.String())
	addr := fmt.Sprintf("%s:%d", cfg.Writer.ListenAddress, gatewayPort)

	h1 := envoytest.HTTPClient(false)
	loop := testkit.StartLoop(t, 2*time.Millisecond, func() bool {
		code, body, err := envoytest.Get(h1, addr, "web.shop.svc.clusterset.local")
		return err == nil && code == 200 && strings.HasPrefix(body, "east/")
	})
	loop.More(20)
	cfg.XDSAddress = app.XDSAddr()
	stop()
	away := loop.Sent()
	loop.More(50) // the control plane is away
	app2, _ := cptest.Run(t, cfg)
	e.WaitSynced(t, app2, "east-gateway", v.String())
	loop.More(20)
	loop.Stop()
	if loop.Failed() > 0 {
		t.Errorf("%d of %d requests failed across the control plane's restart", loop.Failed(), loop.Sent())
	}
	t.Logf("%d requests across the restart (%d from the stop to the new control plane's sync), %d failed", loop.Sent(), loop.Sent()-away, loop.Failed())
}
