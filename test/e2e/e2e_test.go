package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestEndToEnd drives the real control plane with gRPC-Go's xDS client in
// member cluster a. Each step names the behaviour it guards.
func TestEndToEnd(t *testing.T) {
	a1, a2 := startBackend(t, "a1", "127.0.0.11"), startBackend(t, "a2", "127.0.0.12")
	b1 := startBackend(t, "b1", "127.0.0.21")
	c1 := startBackend(t, "c1", "127.0.0.31")
	cAdmin := startBackend(t, "c1-admin", "127.0.0.31")
	onlyB := startBackend(t, "only-b", "127.0.0.22")
	sticky1, sticky2 := startBackend(t, "sticky-1", "127.0.0.23"), startBackend(t, "sticky-2", "127.0.0.24")
	v1, v2, parent := startBackend(t, "v1", "127.0.0.41"), startBackend(t, "v2", "127.0.0.42"), startBackend(t, "parent", "127.0.0.43")
	tkA, tkB := startBackend(t, "takeover-a", "127.0.0.13"), startBackend(t, "takeover-b", "127.0.0.25")
	solo := startBackend(t, "solo", "127.0.0.26")

	dir := t.TempDir()
	cp := &controlPlane{t: t, dir: dir}
	echoA := func(ready bool) string {
		return docs(service("echo", "grpc:9000"), export("echo"), slices("echo", "grpc", ready, a1, a2))
	}
	cp.write("a/echo.yaml", echoA(true))
	cp.write("b/echo.yaml", docs(service("echo", "grpc:9000"), export("echo"), slices("echo", "grpc", true, b1)))
	cp.write("b/only-b.yaml", docs(service("only-b", "grpc:9000"), export("only-b"), slices("only-b", "grpc", true, onlyB)))
	for name, be := range map[string]*backend{"split": parent, "split-v1": v1, "split-v2": v2} {
		cp.write("b/"+name+".yaml", docs(service(name, "grpc:9000"), export(name), slices(name, "grpc", true, be)))
	}
	cp.write("a/split-route.yaml", `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: split, namespace: demo}
spec:
  parentRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: split}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "true"}]}]
    backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: split-v2, port: 9000}]
  - matches: [{method: {service: grpc.testing.TestService, method: EmptyCall}}]
    backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: split-v2, port: 9000}]
  - backendRefs:
    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: split-v1, port: 9000, weight: 80}
    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: split-v2, port: 9000, weight: 20}
`)
	// A mesh route whose backend is exported by a (local) and b.
	takeoverA := func(ready bool) string {
		return docs(service("takeover", "grpc:9000"), export("takeover"), slices("takeover", "grpc", ready, tkA))
	}
	cp.write("a/takeover.yaml", takeoverA(true))
	cp.write("b/takeover.yaml", docs(service("takeover", "grpc:9000"), export("takeover"), slices("takeover", "grpc", true, tkB)))
	cp.write("a/routed.yaml", docs(service("routed", "grpc:9000"), export("routed"), slices("routed", "grpc", true, parent), `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: routed, namespace: demo}
spec:
  parentRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: routed}]
  rules:
  - backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: takeover}]
`))
	cp.write("b/sticky.yaml", docs(strings.Replace(service("sticky", "grpc:9000"), "spec:\n", "spec:\n  sessionAffinity: ClientIP\n", 1),
		export("sticky"), slices("sticky", "grpc", true, sticky1, sticky2)))
	// c also exposes an admin port that no other cluster has.
	cp.write("c/echo.yaml", docs(service("echo", "grpc:9000", "admin:9100"), export("echo"),
		slices("echo", "grpc", true, c1), strings.ReplaceAll(slices("echo", "admin", true, cAdmin), "echo-c1-admin", "echo-c1-admin-port")))
	cp = startControlPlane(t, dir)

	// Targets are spelled out: they are the documented contract
	// (xds:///<svc>.<ns>.svc.clusterset.local:<port>) that users dial.
	echo := cp.xdsClient(t, "client-a", "a", "echo.demo.svc.clusterset.local:9000")

	t.Run("RPCs reach only the local cluster while it has ready endpoints", func(t *testing.T) {
		// Round robin uses a backend once its connection is up: wait
		// until both of a's answer, then check nobody else does.
		seen := map[string]int{}
		eventually(t, 10*time.Second, "both of a's backends answering", func() bool {
			name, _ := call(echo, time.Second)
			seen[name]++
			return seen["a1"] > 0 && seen["a2"] > 0
		})
		delete(seen, "") // RPCs before the first config arrived fail
		if got := spread(echo, 40); got["a1"]+got["a2"] != 40 || seen["a1"]+seen["a2"] != sum(seen) {
			t.Fatalf("answers %v (while connecting %v), want all from a1 and a2", got, seen)
		}
	})

	t.Run("traffic fails over to b and c when a's endpoints are not ready, and comes back", func(t *testing.T) {
		cp.write("a/echo.yaml", echoA(false))
		took := eventually(t, 10*time.Second, "failover", func() bool {
			name, err := call(echo, time.Second)
			return err == nil && (name == "b1" || name == "c1")
		})
		// A figure, not a property (BenchmarkFailover).
		t.Logf("edit to traffic on b/c: %v", took)
		seen := map[string]int{}
		eventually(t, 10*time.Second, "both b1 and c1 answering", func() bool {
			name, _ := call(echo, time.Second)
			seen[name]++
			return seen["b1"] > 0 && seen["c1"] > 0
		})
		if got := spread(echo, 60); got["b1"]+got["c1"] != 60 || seen["b1"]+seen["c1"]+seen["a1"]+seen["a2"] != sum(seen) {
			t.Errorf("after failover answers %v (while connecting %v), want b1 and c1 only", got, seen)
		}
		cp.write("a/echo.yaml", echoA(true))
		took = eventually(t, 10*time.Second, "failback", func() bool {
			name, err := call(echo, time.Second)
			return err == nil && strings.HasPrefix(name, "a")
		})
		t.Logf("edit to traffic back on a: %v", took)
		if got := spread(echo, 20); got["a1"]+got["a2"] != 20 {
			t.Errorf("after failback answers %v", got)
		}
	})

	t.Run("a service exported from b only is reachable from a", func(t *testing.T) {
		c := cp.xdsClient(t, "client-a-onlyb", "a", "only-b.demo.svc.clusterset.local:9000")
		if got := spread(c, 10); got["only-b"] != 10 {
			t.Errorf("answers %v", got)
		}
	})

	t.Run("a service is served to a's clients only once a holds its namespace (namespace sameness)", func(t *testing.T) {
		// b exports solo/solo; a has no namespace solo, so it does not
		// import the service: a's view has no listener for it, and a's
		// client cannot call it (gRPC waits for a listener it never saw
		// until its own does-not-exist timer, so the RPC times out).
		cp.write("b/solo.yaml", strings.ReplaceAll(docs(service("solo", "grpc:9000"), export("solo"), slices("solo", "grpc", true, solo)), "namespace: demo", "namespace: solo"))
		eventually(t, 10*time.Second, "b's clients served solo", func() bool {
			for _, r := range cp.app.Cache.Resources("b/client", resourcev3.ListenerType).Resources {
				if r.Name == "solo.solo.svc.clusterset.local:9000" {
					return true
				}
			}
			return false
		})
		for _, r := range cp.app.Cache.Resources("a/client", resourcev3.ListenerType).Resources {
			if strings.HasPrefix(r.Name, "solo.solo.") {
				t.Fatalf("a/client serves %s, though a lacks namespace solo", r.Name)
			}
		}
		c := cp.xdsClient(t, "client-a-solo", "a", "solo.solo.svc.clusterset.local:9000")
		if name, err := call(c, time.Second); err == nil {
			t.Fatalf("a's client, whose member lacks the namespace, reached %s", name)
		}
		cp.write("a/solo-namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: solo}\n")
		eventually(t, 10*time.Second, "solo reachable from a once a has the namespace", func() bool {
			name, err := call(c, time.Second)
			return err == nil && name == "solo"
		})
	})

	t.Run("a port exported only by c gets traffic only on c's backends", func(t *testing.T) {
		c := cp.xdsClient(t, "client-a-admin", "a", "echo.demo.svc.clusterset.local:9100")
		if got := spread(c, 10); got["c1-admin"] != 10 {
			t.Errorf("answers %v", got)
		}
	})

	t.Run("ClientIP session affinity keeps a client on one backend", func(t *testing.T) {
		c := cp.xdsClient(t, "client-a-sticky", "a", "sticky.demo.svc.clusterset.local:9000")
		got := spread(c, 30)
		if len(got) != 1 || (got["sticky-1"] != 30 && got["sticky-2"] != 30) {
			t.Errorf("answers %v, want all from one backend", got)
		}
		// And it is the hashing that keeps it there, not a backend still
		// connecting: the served cluster balances by consistent hash.
		for _, r := range cp.app.Cache.Resources("a/client", resourcev3.ClusterType).Resources {
			if strings.HasPrefix(r.Name, "sticky.") && r.Message.(*clusterv3.Cluster).LbPolicy != clusterv3.Cluster_RING_HASH {
				t.Errorf("cluster %s balances with %v", r.Name, r.Message.(*clusterv3.Cluster).LbPolicy)
			}
		}
	})

	t.Run("a GRPCRoute on a ServiceImport splits 80/20 and routes by header", func(t *testing.T) {
		c := cp.xdsClient(t, "client-a-split", "a", "split.demo.svc.clusterset.local:9000")
		eventually(t, 10*time.Second, "both versions answering", func() bool {
			got := spread(c, 20)
			return got["v1"] > 0 && got["v2"] > 0
		})
		got := spread(c, 1000)
		t.Logf("1000 RPCs: %v", got)
		if got["v1"]+got["v2"] != 1000 || got["v1"] < 750 || got["v1"] > 850 {
			t.Errorf("answers %v, want 80%% (within 5 points) on v1 and the rest on v2", got)
		}
		canary := map[string]int{}
		for range 20 {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-canary", "true"), 2*time.Second)
			resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			canary[resp.GetServerId()]++
		}
		if canary["v2"] != 20 {
			t.Errorf("x-canary answers %v, want all from v2", canary)
		}
		method := map[string]int{}
		for range 20 {
			name, err := emptyCall(c, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			method[name]++
		}
		if method["v2"] != 20 {
			t.Errorf("EmptyCall answers %v, want all from v2 (method match)", method)
		}
	})

	t.Run("a route's ServiceImport backend fails over to another cluster when the local one loses its endpoints", func(t *testing.T) {
		c := cp.xdsClient(t, "client-a-routed", "a", "routed.demo.svc.clusterset.local:9000")
		if got := spread(c, 20); got["takeover-a"] != 20 {
			t.Fatalf("answers %v, want the local backend (a) only", got)
		}
		cp.write("a/takeover.yaml", takeoverA(false))
		took := eventually(t, 10*time.Second, "takeover by b", func() bool {
			name, err := call(c, time.Second)
			return err == nil && name == "takeover-b"
		})
		t.Logf("edit to traffic on b: %v", took)
		if got := spread(c, 20); got["takeover-b"] != 20 {
			t.Errorf("after a lost its endpoints answers %v, want b only", got)
		}
		cp.write("a/takeover.yaml", takeoverA(true))
		eventually(t, 10*time.Second, "back to a", func() bool {
			name, err := call(c, time.Second)
			return err == nil && name == "takeover-a"
		})
	})

	t.Run("a broken YAML file changes nothing that is served", func(t *testing.T) {
		before := cp.served()
		cp.write("a/broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: echo\n")
		eventually(t, 5*time.Second, "problem reported", func() bool {
			return strings.Contains(cp.get("/debug/clusters"), "broken.yaml:1: document 1")
		})
		if after := cp.served(); after != before {
			t.Errorf("served versions changed after a broken file:\nbefore %s\nafter %s", before, after)
		}
		if got := spread(echo, 10); got["a1"]+got["a2"] != 10 {
			t.Errorf("answers %v", got)
		}
		cp.remove("a/broken.yaml")
	})

	t.Run("a typo in a served file keeps its last good version served", func(t *testing.T) {
		before := cp.served()
		cp.write("a/echo.yaml", strings.Replace(echoA(true), "ports:", "prots:", 1))
		eventually(t, 5*time.Second, "problem reported", func() bool {
			c := cp.get("/debug/clusters")
			return strings.Contains(c, `unknown field \"spec.prots\"`) && strings.Contains(c, "its last good version is still served")
		})
		// Past the folder's settle time: nothing was removed meanwhile.
		time.Sleep(1500 * time.Millisecond)
		if after := cp.served(); after != before {
			t.Errorf("served versions changed after a typo:\nbefore %s\nafter %s", before, after)
		}
		if got := spread(echo, 10); got["a1"]+got["a2"] != 10 {
			t.Errorf("answers %v, want a's endpoints still", got)
		}
		cp.write("a/echo.yaml", echoA(true))
	})

	t.Run("debug endpoint shows the client SYNCED and metrics count pushes", func(t *testing.T) {
		eventually(t, 5*time.Second, "client SYNCED", func() bool {
			s := cp.get("/debug/syncz")
			return strings.Contains(s, `"nodeID": "client-a"`) && strings.Contains(s, `"summary": "SYNCED"`)
		})
		m := cp.get("/metrics")
		// gRPC-Go shares one ADS stream between channels of the same
		// bootstrap, so at least one stream is connected.
		for _, want := range []string{`eastwest_xds_pushes_total{type="Listener"} [1-9]`, `eastwest_xds_pushes_total{type="ClusterLoadAssignment"} [1-9]`, "\neastwest_xds_clients [1-9]"} {
			if !regexp.MustCompile(want).MatchString(m) {
				t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "eastwest_xds"))
			}
		}
		if e := cp.get("/debug/explain?service=demo/echo"); !strings.Contains(e, "client-a") || !strings.Contains(e, "has ") {
			t.Errorf("explain does not name the client:\n%s", e)
		}
	})

	t.Run("unexporting removes the listener and RPCs fail cleanly", func(t *testing.T) {
		c := cp.xdsClient(t, "client-a-gone", "a", "only-b.demo.svc.clusterset.local:9000")
		if got := spread(c, 5); got["only-b"] != 5 {
			t.Fatalf("before unexport: %v", got)
		}
		cp.write("b/only-b.yaml", docs(service("only-b", "grpc:9000"), slices("only-b", "grpc", true, onlyB)))
		eventually(t, 10*time.Second, "RPCs fail", func() bool {
			_, err := call(c, 2*time.Second)
			return status.Code(err) == codes.Unavailable
		})
		start := time.Now()
		_, err := call(c, 5*time.Second)
		if status.Code(err) != codes.Unavailable || time.Since(start) > time.Second {
			t.Errorf("RPC after unexport: %v after %v, want UNAVAILABLE at once", err, time.Since(start))
		}
	})
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
