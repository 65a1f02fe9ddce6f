package assemble_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// BenchmarkGatewayRebuild measures what a change costs a member whose
// Gateway has many routes (routes x 5 rules, each rule to two of the
// imports; every import with 10 endpoints in each of 3 clusters), flushed
// through the Assembler as serve does:
//   - endpoints: a backend's endpoints changed in another member (the
//     common case): that service is translated again for every view, and
//     only that backend's clusters for the Gateway;
//   - full: one of the member's HTTPRoutes changed: the member's Gateway
//     API result is built again and its Gateway translated; this grows
//     with the member's routes, not the ClusterSet.
func BenchmarkGatewayRebuild(b *testing.B) {
	for _, routes := range []int{10, 100, 500} {
		b.Run(fmt.Sprintf("routes=%d", routes), func(b *testing.B) {
			a := assemble.New(assemble.Options{})
			for c, member := range []string{"east", "west", "central"} {
				_ = a.Apply(event.Event{Member: member, Op: event.OpJoin})
				var y strings.Builder
				y.WriteString(fuzzBase)
				for s := range routes {
					fmt.Fprintf(&y, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: ns}\nspec: {ports: [{name: http, port: 80}]}\n", s)
					fmt.Fprintf(&y, "---\napiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: s%d, namespace: ns}\n", s)
					y.WriteString(benchSliceYAML(s, c, 0))
					if member == "east" {
						y.WriteString(benchRouteYAML(s, routes, ""))
					}
				}
				objs, probs := source.Decode(member+".yaml", []byte(y.String()))
				if len(probs) > 0 {
					b.Fatal(probs)
				}
				for _, o := range objs {
					if member != "east" && event.StoresOf(o.Obj) == event.Gateway {
						continue // east's Gateway only
					}
					if err := a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: o.Obj}); err != nil {
						b.Fatal(err)
					}
				}
			}
			a.Flush()
			if n := len(a.Statuses("east")); n < routes {
				b.Fatalf("%d statuses for %d routes", n, routes)
			}
			// change applies one object to a member, flushes and checks
			// that the Plan updates something.
			change := func(b *testing.B, member, yaml string) {
				objs, probs := source.Decode("change.yaml", []byte(yaml))
				if len(probs) > 0 || len(objs) != 1 {
					b.Fatal(probs, len(objs))
				}
				if err := a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: objs[0].Obj}); err != nil {
					b.Fatal(err)
				}
				if p := a.Flush(); len(p.Updates) == 0 {
					b.Fatal("the change updated nothing")
				}
			}
			b.Run("endpoints", func(b *testing.B) {
				b.ReportAllocs()
				gen := 0
				for b.Loop() {
					gen++
					change(b, "west", benchSliceYAML(0, 1, gen))
				}
			})
			b.Run("full", func(b *testing.B) {
				b.ReportAllocs()
				gen := 0
				for b.Loop() {
					gen++
					change(b, "east", benchRouteYAML(0, routes, fmt.Sprint("v", gen)))
				}
			})
		})
	}
}

// benchSliceYAML is service s's EndpointSlice in member c: 10 endpoints,
// whose addresses change with gen.
func benchSliceYAML(s, c, gen int) string {
	var y strings.Builder
	fmt.Fprintf(&y, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s%d-1, namespace: ns, labels: {kubernetes.io/service-name: s%d}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n", s, s)
	for e := range 10 {
		fmt.Fprintf(&y, "- addresses: [10.%d.%d.%d]\n", c, (s+gen)%250, e+1)
	}
	return y.String()
}

// benchRouteYAML is HTTPRoute r<s> of the Gateway: 5 rules, each to the
// imports s and s+1; prefix, when set, changes its rules' paths.
func benchRouteYAML(s, routes int, prefix string) string {
	var y strings.Builder
	fmt.Fprintf(&y, "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r%d, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [h%d.example.com]\n  rules:\n", s, s%20)
	for r := range 5 {
		fmt.Fprintf(&y, "  - matches: [{path: {type: PathPrefix, value: /%sp%d}, headers: [{name: x-r, value: \"%d\"}]}]\n    backendRefs:\n    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: s%d, port: 80, weight: 9}\n    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: s%d, port: 80, weight: 1}\n", prefix, r, r, s, (s+1)%routes)
	}
	return y.String()
}
