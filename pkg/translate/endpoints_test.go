package translate_test

import (
	"os"
	"path/filepath"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// A ClusterSet where a exports apps/api and b, c and d only import it.
const exporter = `apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: apps}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: api, namespace: apps}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-a, namespace: apps, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {ready: true}
- addresses: [10.1.0.2]
  conditions: {ready: true}
`

const importer = `apiVersion: v1
kind: Namespace
metadata: {name: apps}
`

// The views of one publish share what they have in common: every view's
// assignment of a service holds the same endpoint messages (built once
// per EndpointSlice), and the importers that see the service alike (b, c
// and d, clients and gateways: none exports it) share one assignment
// message, which the cache marshals once; the exporter's own views,
// where its endpoints are local, stay apart only if they differ.
func TestViewsShareEndpointsAndAssignments(t *testing.T) {
	dir := t.TempDir()
	for member, yaml := range map[string]string{"a": exporter, "b": importer, "c": importer, "d": importer} {
		if err := os.MkdirAll(filepath.Join(dir, member), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, member, "api.yaml"), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	off, _ := load(t, dir)
	const name = "api.apps.svc.clusterset.local:80"
	got := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, v := range off.Views() {
		for _, r := range off.View(v).Resources {
			if r.Type == resourcev3.EndpointType && r.Name == name {
				got[v.String()] = r.Message.(*endpointv3.ClusterLoadAssignment)
			}
		}
	}
	if len(got) != 8 {
		t.Fatalf("assignments of %s in %d views, want 8 (4 members x 2 roles): %v", name, len(got), got)
	}
	shared := got["b/client"]
	for _, v := range []string{"b/gateway", "c/client", "c/gateway", "d/client", "d/gateway"} {
		if got[v] != shared {
			t.Errorf("%s has an assignment of its own; every importer's is the same", v)
		}
	}
	a := got["a/client"]
	if len(a.Endpoints) != 1 || len(shared.Endpoints) != 1 || len(a.Endpoints[0].LbEndpoints) != 2 {
		t.Fatalf("a's assignment %v, the importers' %v", a, shared)
	}
	for i, ep := range a.Endpoints[0].LbEndpoints {
		if ep != shared.Endpoints[0].LbEndpoints[i] {
			t.Errorf("endpoint %d is built once per view, not once per slice", i)
		}
	}
	if !proto.Equal(a, shared) {
		t.Errorf("a's own view differs from the importers' (one member, one locality at priority 0):\n%v\n%v", a, shared)
	}
}

// SameAssignment is a cheap equality for assignments whose endpoints come
// from one slice: the same localities, priorities, weights and endpoint
// messages; an equal endpoint built apart is not the same (one more
// marshal, never a wrong share).
func TestSameAssignment(t *testing.T) {
	ep := func(addr string) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: addr}}}}}}
	}
	e1, e2 := ep("10.0.0.1"), ep("10.0.0.2")
	cla := func(edit func(*endpointv3.ClusterLoadAssignment)) *endpointv3.ClusterLoadAssignment {
		c := &endpointv3.ClusterLoadAssignment{ClusterName: "x", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Locality: &corev3.Locality{Region: "a", Zone: "a"}, LbEndpoints: []*endpointv3.LbEndpoint{e1}, LoadBalancingWeight: wrapperspb.UInt32(1)},
			{Locality: &corev3.Locality{Region: "b", Zone: "b"}, LbEndpoints: []*endpointv3.LbEndpoint{e2}, LoadBalancingWeight: wrapperspb.UInt32(1), Priority: 1},
		}}
		if edit != nil {
			edit(c)
		}
		return c
	}
	base := cla(nil)
	for _, tc := range []struct {
		name string
		edit func(*endpointv3.ClusterLoadAssignment)
		same bool
	}{
		{"built alike", nil, true},
		{"another name", func(c *endpointv3.ClusterLoadAssignment) { c.ClusterName = "y" }, false},
		{"priorities swapped", func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[0].Priority, c.Endpoints[1].Priority = 1, 0 }, false},
		{"another weight", func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].LoadBalancingWeight = wrapperspb.UInt32(2) }, false},
		{"another sub-zone", func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[0].Locality.SubZone = "z" }, false},
		{"an endpoint fewer", func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].LbEndpoints = nil }, false},
		{"an equal endpoint built apart", func(c *endpointv3.ClusterLoadAssignment) {
			c.Endpoints[1].LbEndpoints = []*endpointv3.LbEndpoint{ep("10.0.0.2")}
		}, false},
		{"a locality fewer", func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints = c.Endpoints[:1] }, false},
	} {
		if got := translate.SameAssignment(base, cla(tc.edit)); got != tc.same {
			t.Errorf("%s: SameAssignment = %v, want %v", tc.name, got, tc.same)
		}
	}
}
