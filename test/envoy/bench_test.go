package envoy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

// percentiles reports p50 and p99 of durations as benchmark metrics.
func percentiles(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	if len(ds) == 0 {
		return
	}
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkEndpointChangeToEnvoy is the time from an EndpointSlice edit
// in the ClusterSet folder (which of two local pods is ready) to the
// traffic through a real Envoy east-west gateway moving to the other pod:
// file notification, holdoffs, merge, translation, push, Envoy's EDS
// update and the next request.
//
//	go test -run '^$' -bench EndpointChangeToEnvoy -benchtime 100x ./test/envoy
func BenchmarkEndpointChangeToEnvoy(b *testing.B) {
	pods := []*envoytest.Backend{}
	for i := range 2 {
		port := 0
		if i > 0 {
			port = pods[0].HTTPPort
		}
		pods = append(pods, envoytest.StartBackend(b, fmt.Sprintf("east/web-%d", i), memberIP(1, i+1), port, 0, -1))
	}
	port := pods[0].HTTPPort
	dir := b.TempDir()
	slice := func(ready int) string {
		eps := []string{pods[0].IP + "!", pods[1].IP + "!"}
		eps[ready] = pods[ready].IP
		return fixture.ServiceYAML("shop", "web", []string{fmt.Sprintf("http:80:%d", port)}, eps...)
	}
	writeFile(b, filepath.Join(dir, "east", "cluster.yaml"), fixture.ClusterYAML("east"))
	writeFile(b, filepath.Join(dir, "east", "web.yaml"), slice(0))
	cfg := controlplane.Config{Dir: dir}
	cfg.Writer.GatewayPort = gatewayPort
	cfg.Writer.ListenAddress = testkit.Loopback(b, gatewayPort)
	app, _ := cptest.Run(b, cfg)
	v := translate.View{Cluster: "east", Role: translate.RoleGateway}
	e := envoytest.ForView(b, app, v, "bench-gateway", true, nil)
	e.WaitSynced(b, app, "bench-gateway", v.String())
	addr := fmt.Sprintf("%s:%d", cfg.Writer.ListenAddress, gatewayPort)
	h1 := envoytest.HTTPClient(false)
	var ds []time.Duration
	ready := 0
	b.ResetTimer()
	for b.Loop() {
		ready = 1 - ready
		start := time.Now()
		writeFile(b, filepath.Join(dir, "east", "web.yaml"), slice(ready))
		for {
			_, body, err := envoytest.Get(h1, addr, "web.shop.svc.clusterset.local")
			if err == nil && strings.HasPrefix(body, pods[ready].Name+" ") {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("traffic did not move within 10s: %q %v", body, err)
			}
		}
		ds = append(ds, time.Since(start))
	}
	percentiles(b, ds)
}

// BenchmarkEnvoyColdStart is the time from Envoy's start to its first
// full config (every type acknowledged at the current version, /ready
// LIVE) for the demo's east gateway and Gateway, and for a gateway of a
// 1000-service ClusterSet (2000 clusters and endpoint sets).
//
//	go test -run '^$' -bench EnvoyColdStart -benchtime 10x ./test/envoy
func BenchmarkEnvoyColdStart(b *testing.B) {
	big := b.TempDir()
	fixture.WriteClusterSet(b, big, fixture.Scale{Services: 1000, Members: 3, Exporters: 2, Endpoints: 3})
	cases := []struct {
		name string
		dir  string
		view translate.View
	}{
		{"demo-east-gateway", "../../examples/clusterset", translate.View{Cluster: "east", Role: translate.RoleGateway}},
		{"demo-gateway-api", "../../examples/clusterset", translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "shop/public"}},
		{"1000-services-gateway", big, translate.View{Cluster: "m0", Role: translate.RoleGateway}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			app, _ := cptest.Run(b, controlplane.Config{Dir: c.dir})
			var ds []time.Duration
			i := 0
			for b.Loop() {
				i++
				id := fmt.Sprint("cold-", i)
				start := time.Now()
				e := envoytest.ForView(b, app, c.view, id, true, nil)
				e.WaitSynced(b, app, id, c.view.String())
				ds = append(ds, time.Since(start))
				e.Stop()
			}
			percentiles(b, ds)
		})
	}
}
