package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// BenchmarkGatewayRebuild measures what a change to a service a Gateway's
// routes name costs the writer (routes x 5 rules, each rule to two of the
// imports; every import with 10 endpoints in each of 3 clusters):
//   - full: its shape changed (ports, import appeared): the member's
//     Gateway API result is built again and its Gateway translated; this
//     grows with the member's routes, not the ClusterSet;
//   - endpoints: only its endpoints changed (the common case): only that
//     backend's clusters are translated again.
func BenchmarkGatewayRebuild(b *testing.B) {
	for _, routes := range []int{10, 100, 500} {
		b.Run(fmt.Sprintf("routes=%d", routes), func(b *testing.B) {
			store, gws := mcs.NewStore(mcs.Options{}), gateway.NewStore()
			for c, member := range []string{"east", "west", "central"} {
				var y strings.Builder
				y.WriteString(fuzzBase)
				for s := range routes {
					fmt.Fprintf(&y, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: ns}\nspec: {ports: [{name: http, port: 80}]}\n", s)
					fmt.Fprintf(&y, "---\napiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: s%d, namespace: ns}\n", s)
					fmt.Fprintf(&y, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s%d-1, namespace: ns, labels: {kubernetes.io/service-name: s%d}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n", s, s)
					for e := range 10 {
						fmt.Fprintf(&y, "- addresses: [10.%d.%d.%d]\n", c, s%250, e+1)
					}
					if member != "east" {
						continue
					}
					fmt.Fprintf(&y, "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r%d, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [h%d.example.com]\n  rules:\n", s, s%20)
					for r := range 5 {
						fmt.Fprintf(&y, "  - matches: [{path: {type: PathPrefix, value: /p%d}, headers: [{name: x-r, value: \"%d\"}]}]\n    backendRefs:\n    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: s%d, port: 80, weight: 9}\n    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: s%d, port: 80, weight: 1}\n", r, r, s, (s+1)%routes)
					}
				}
				objs, probs := source.Decode(member+".yaml", []byte(y.String()))
				if len(probs) > 0 {
					b.Fatal(probs)
				}
				for _, o := range objs {
					ev := event.Event{Member: member, Op: event.OpUpsert, Object: o.Obj}
					stores := event.StoresOf(o.Obj)
					if stores&event.Gateway != 0 && member == "east" {
						_ = gws.Apply(ev)
					}
					if stores&event.MCS == 0 {
						continue
					}
					if err := store.Apply(ev); err != nil {
						b.Fatal(err)
					}
				}
			}
			store.Flush()
			state := store.Snapshot()
			look := lookup{state, store}
			be := translate.Backends{State: state, Local: func(k mcs.ServiceKey) (*mcs.Service, []*mcs.Slice) { return store.Local("east", k) }}
			b.Run("endpoints", func(b *testing.B) {
				res := gateway.Build(gws.Inputs("east"), look)
				gw := res.Gateways[0]
				v := translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key)}
				one := mcs.ServiceKey{Namespace: "ns", Name: "s0"}
				b.ReportAllocs()
				for b.Loop() {
					parts := translate.GatewayBackends(gw, v, be, func(k mcs.ServiceKey) bool { return k == one })
					if len(parts[one].Resources) != 2 {
						b.Fatalf("backend resources %v", parts[one])
					}
				}
			})
			b.Run("full", func(b *testing.B) {
				b.ReportAllocs()
				resources := 0
				for b.Loop() {
					res := gateway.Build(gws.Inputs("east"), look)
					for _, gw := range res.Gateways {
						r := translate.GatewayAPI(gw, translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key)}, be)
						resources = len(r.Resources)
						if len(r.Invalid) > 0 {
							b.Fatal(r.Invalid)
						}
					}
				}
				b.ReportMetric(float64(resources), "resources")
			})
		})
	}
}
