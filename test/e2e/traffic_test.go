package e2e

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
)

// exportWith is export with annotations (name, value pairs).
func exportWith(name string, kv ...string) string {
	var ann string
	for i := 0; i+1 < len(kv); i += 2 {
		if ann != "" {
			ann += ", "
		}
		ann += fmt.Sprintf("%s: %q", kv[i], kv[i+1])
	}
	return fmt.Sprintf("apiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: %s, namespace: demo, annotations: {%s}}\n", name, ann)
}

const namespaceDemo = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n"

// gRPC-Go's xDS client honours the same cluster selection, strict
// selection and weights as the Envoys (the same load assignments, read
// by another implementation): a client in member a (region r1,
// jurisdiction J1) of four members
//   - calls b (same region) only while b has a ready endpoint, then c
//     (same jurisdiction), never d;
//   - gets UNAVAILABLE, never an answer from d, for a service d alone
//     exports under a strict same-jurisdiction selection;
//   - splits 10,000 RPCs 90/10 by weight within 2 points;
//   - loses no RPC while a migration moves the weights 100/0, 50/50,
//     0/100.
func TestTrafficPolicyProxyless(t *testing.T) {
	bSvc, cSvc, dSvc := startBackend(t, "b", "127.0.0.61"), startBackend(t, "c", "127.0.0.62"), startBackend(t, "d", "127.0.0.63")
	dir := t.TempDir()
	cp := &controlPlane{t: t, dir: dir}
	for _, m := range []struct{ name, region, jurisdiction string }{{"a", "r1", "J1"}, {"b", "r1", "J1"}, {"c", "r2", "J1"}, {"d", "r3", "J2"}} {
		cp.write(m.name+"/cluster.yaml", docs(fixture.ClusterYAML(m.name, "region.topology.k8s.io="+m.region, "jurisdiction.eastwest.io="+m.jurisdiction), namespaceDemo))
	}
	sel := `[{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "@SameAsImporter@"}}}, {"propertySelector": {"matchProperties": {"jurisdiction.eastwest.io": "@SameAsImporter@"}}}]`
	tiered := func(be *backend, ready bool) string {
		return docs(service("tiered", "grpc:9000"), exportWith("tiered", "eastwest.io/cluster-selectors", sel), slices("tiered", "grpc", ready, be))
	}
	cp.write("b/tiered.yaml", tiered(bSvc, true))
	cp.write("c/tiered.yaml", tiered(cSvc, true))
	cp.write("d/tiered.yaml", tiered(dSvc, true))
	cp.write("d/local.yaml", docs(service("local", "grpc:9000"), exportWith("local", "eastwest.io/cluster-selectors",
		`[{"propertySelector": {"matchProperties": {"jurisdiction.eastwest.io": "@SameAsImporter@"}}}]`, "eastwest.io/cluster-selectors-strict", "true"),
		slices("local", "grpc", true, dSvc)))
	weighted := func(svc string, be *backend, weight int) string {
		return docs(service(svc, "grpc:9000"), exportWith(svc, "eastwest.io/weight", fmt.Sprint(weight)), slices(svc, "grpc", true, be))
	}
	cp.write("b/canary.yaml", weighted("canary", bSvc, 90))
	cp.write("c/canary.yaml", weighted("canary", cSvc, 10))
	cp.write("b/move.yaml", weighted("move", bSvc, 100))
	cp.write("c/move.yaml", weighted("move", cSvc, 0))
	cp = startControlPlane(t, dir)

	t.Run("the first tier with a ready endpoint takes all", func(t *testing.T) {
		c := cp.xdsClient(t, "client-tiered", "a", "tiered.demo.svc.clusterset.local:9000")
		eventually(t, 10*time.Second, "an answer", func() bool { _, err := call(c, time.Second); return err == nil })
		if got := spread(c, 2000); got["b"] != 2000 {
			t.Fatalf("2,000 RPCs: %v, want all to b (same region)", got)
		}
		cp.write("b/tiered.yaml", tiered(bSvc, false))
		took := eventually(t, 10*time.Second, "traffic on c", func() bool { s, _ := call(c, time.Second); return s == "c" })
		if got := spread(c, 1000); got["c"] != 1000 {
			t.Fatalf("b not ready: %v, want all to c (same jurisdiction), none to d", got)
		}
		t.Logf("b not ready: RPCs on c %v after the change was written", took.Round(time.Millisecond))
	})

	t.Run("a strict selection fails rather than cross", func(t *testing.T) {
		c := cp.xdsClient(t, "client-local", "a", "local.demo.svc.clusterset.local:9000")
		got := spread(c, 20)
		if got["error"] != 20 {
			t.Fatalf("RPCs to a J2-only strict service from J1: %v, want 20 errors", got)
		}
		if _, err := call(c, time.Second); status.Code(err) != codes.Unavailable {
			t.Errorf("error %v, want UNAVAILABLE", err)
		}
	})

	t.Run("weights", func(t *testing.T) {
		c := cp.xdsClient(t, "client-canary", "a", "canary.demo.svc.clusterset.local:9000")
		eventually(t, 10*time.Second, "an answer", func() bool { _, err := call(c, time.Second); return err == nil })
		const n = 10000
		got := spread(c, n)
		share := float64(got["b"]) / n
		if share < 0.88 || share > 0.92 || got["b"]+got["c"] != n {
			t.Fatalf("%d RPCs with weights 90/10: %v, want b 90%% +-2", n, got)
		}
		t.Logf("weights 90/10 over %d RPCs: b %.2f%%", n, 100*share)
	})

	t.Run("a migration in steps loses no RPC", func(t *testing.T) {
		c := cp.xdsClient(t, "client-move", "a", "move.demo.svc.clusterset.local:9000")
		eventually(t, 10*time.Second, "an answer from b", func() bool { s, _ := call(c, time.Second); return s == "b" })
		loop := testkit.StartLoop(t, 0, func() bool {
			_, err := call(c, 2*time.Second)
			return err == nil
		})
		for _, w := range [][2]int{{50, 50}, {0, 100}} {
			loop.More(300)
			cp.write("b/move.yaml", weighted("move", bSvc, w[0]))
			cp.write("c/move.yaml", weighted("move", cSvc, w[1]))
		}
		eventually(t, 10*time.Second, "all RPCs on c", func() bool { return spread(c, 50)["c"] == 50 })
		if got := spread(c, 200); got["c"] != 200 {
			t.Errorf("at 0/100: %v, want all to c", got)
		}
		loop.Stop()
		if loop.Failed() > 0 {
			t.Fatalf("migration: %d of %d RPCs failed", loop.Failed(), loop.Sent())
		}
		t.Logf("migration 100/0 -> 50/50 -> 0/100: %d RPCs, none failed", loop.Sent())
	})
}

// gRPC-Go's xDS client honours trafficDistribution (PreferClose) by the
// zone it declares: service near has a pod of member a in zone z1 and
// one in z2, and b's pod. A client of a in z1 sends every RPC to z1's
// pod; with it not ready, to z2's (its member's other zone), never to b;
// with both not ready, to b. A client of a that declares no zone spreads
// over both of a's pods.
func TestTrafficDistributionProxyless(t *testing.T) {
	a1, a2, b := startBackend(t, "a1", "127.0.0.71"), startBackend(t, "a2", "127.0.0.72"), startBackend(t, "b", "127.0.0.73")
	dir := t.TempDir()
	cp := &controlPlane{t: t, dir: dir}
	for _, m := range []string{"a", "b"} {
		cp.write(m+"/cluster.yaml", docs(fixture.ClusterYAML(m), namespaceDemo))
	}
	zoned := func(be *backend, zone string, ready bool) string {
		return fmt.Sprintf("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: near-%s, namespace: demo, labels: {kubernetes.io/service-name: near}}\naddressType: IPv4\nports: [{name: grpc, port: %d, protocol: TCP}]\nendpoints:\n- {addresses: [%q], conditions: {ready: %v}, zone: %s}\n",
			be.name, be.addr.Port, be.addr.IP.String(), ready, zone)
	}
	near := service("near", "grpc:9000") + "  trafficDistribution: PreferClose\n"
	writeA := func(a1Ready, a2Ready bool) {
		cp.write("a/near.yaml", docs(near, export("near"), zoned(a1, "z1", a1Ready), zoned(a2, "z2", a2Ready)))
	}
	writeA(true, true)
	cp.write("b/near.yaml", docs(near, export("near"), zoned(b, "zb", true)))
	cp = startControlPlane(t, dir)

	c := cp.xdsClientIn(t, "client-z1", "a", "z1", "near.demo.svc.clusterset.local:9000")
	eventually(t, 10*time.Second, "an answer", func() bool { _, err := call(c, time.Second); return err == nil })
	if got := spread(c, 1000); got["a1"] != 1000 {
		t.Fatalf("1,000 RPCs from zone z1: %v, want all to a1 (z1)", got)
	}
	anyZone := cp.xdsClient(t, "client-nozone", "a", "near.demo.svc.clusterset.local:9000")
	eventually(t, 10*time.Second, "an answer", func() bool { _, err := call(anyZone, time.Second); return err == nil })
	if got := spread(anyZone, 1000); got["a1"] < 300 || got["a2"] < 300 || got["a1"]+got["a2"] != 1000 {
		t.Fatalf("1,000 RPCs from no zone: %v, want spread over a1 and a2", got)
	}
	writeA(false, true)
	eventually(t, 10*time.Second, "RPCs on a2", func() bool { s, _ := call(c, time.Second); return s == "a2" })
	if got := spread(c, 1000); got["a2"] != 1000 {
		t.Fatalf("a1 not ready: %v, want all to a2 (the member's other zone), none to b", got)
	}
	writeA(false, false)
	eventually(t, 10*time.Second, "RPCs on b", func() bool { s, _ := call(c, time.Second); return s == "b" })
	t.Log("PreferClose with gRPC-Go's xDS client in zone z1: 1,000 of 1,000 RPCs on z1's pod; it not ready, 1,000 of 1,000 on z2's; both not ready, on b")
}
