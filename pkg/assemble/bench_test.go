package assemble_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

func benchSlice(member, svc string, m, gen int) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svc + "-" + member, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for e := range 10 {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", m, gen%250, e+1)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return es
}

// BenchmarkPublish is the cost of one EndpointSlice change once the
// ClusterSet is served: flush the assembler and apply its Plan to the
// cache, at 3 members x {1,000, 10,000, 100,000} services x 10 endpoints,
// every service exported from every member (6 views). The 100,000
// figure must stay close to the 1,000 one: a change costs what it
// changes, not the ClusterSet.
//
//	go test -run '^$' -bench BenchmarkPublish -benchmem ./pkg/assemble
//
// The -3zones cases add, for every member, its client and gateway views
// of three Kubernetes zones (18 more views, made when their first clients
// connect): a change then costs what it costs for 24 views.
//
// The -3networks cases put each member on its own network, with an
// east-west gateway and a tunnel certificate: every gateway view gets the
// other members' endpoints as their gateways' (split-horizon EDS),
// tunnel clusters and relay listeners.
func BenchmarkPublish(b *testing.B) {
	for _, tc := range []struct {
		n        int
		networks bool
		// externalIPs on each member's gateway Service: a member publishing
		// 2,000 (finding 6 of the trust-boundaries issue: east's gateway
		// EDS went from 401 to 800,402 endpoints) gets 16 used.
		externalIPs int
		// zones: zone views asked for, per member and role (clients that
		// declare their Kubernetes zone): each is a whole view.
		zones int
	}{{1_000, false, 0, 0}, {10_000, false, 0, 0}, {100_000, false, 0, 0}, {1_000, true, 1, 0}, {10_000, true, 1, 0}, {1_000, true, 2_000, 0}, {1_000, false, 0, 3}, {10_000, false, 0, 3}} {
		name := fmt.Sprint(tc.n)
		if tc.zones > 0 {
			name += fmt.Sprintf("-%dzones", tc.zones)
		}
		if tc.networks {
			name += "-3networks"
		}
		if tc.externalIPs > 1 {
			name += fmt.Sprintf("-%dexternalIPs", tc.externalIPs)
		}
		n := tc.n
		b.Run(name, func(b *testing.B) {
			ca := cptest.NewCA(b)
			a := assemble.New(assemble.Options{})
			c := cache.New(controlplane.NodeView)
			publish := func(p assemble.Plan) {
				if err := controlplane.Publish(c, p); err != nil {
					b.Fatal(err)
				}
			}
			for m := range 3 {
				member := fmt.Sprint("m", m)
				_ = a.Apply(event.Event{Member: member, Op: event.OpJoin})
				_ = a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}})
				if tc.networks {
					for _, o := range networkObjects(b, ca, member, m, tc.externalIPs) {
						_ = a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: o})
					}
				}
				for i := range n {
					svc := fmt.Sprint("s", i)
					_ = a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc},
						Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}})
					_ = a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: &mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc, CreationTimestamp: metav1.NewTime(time.Unix(1, 0))}}})
					_ = a.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: benchSlice(member, svc, m, 0)})
				}
			}
			start := time.Now()
			first := a.Flush()
			publish(first)
			firstMS := float64(time.Since(start).Milliseconds())
			if tc.networks && !slices.ContainsFunc(first.Updates, func(u assemble.Update) bool { return u.Type == resourcev3.SecretType }) {
				b.Fatal("no tunnel certificates published: the members are not on networks")
			}
			zonesMS := 0.0
			if tc.zones > 0 {
				start := time.Now()
				for m := range 3 {
					for z := range tc.zones {
						for _, r := range assemble.Roles {
							if _, err := a.WantView(fmt.Sprintf("m%d/%s@z%d", m, r, z)); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				publish(a.Flush())
				zonesMS = float64(time.Since(start).Milliseconds())
			}
			first = assemble.Plan{}
			// The setup leaves gigabytes of garbage at 100,000 services; a
			// collection of it still marking during the loop would slow
			// the changes with its write barriers and assists, a cost of
			// the setup, not of a change. The loop's own collections
			// are measured.
			runtime.GC()
			gen := 0
			b.ReportAllocs()
			for b.Loop() {
				gen++
				_ = a.Apply(event.Event{Member: "m1", Op: event.OpUpsert, Object: benchSlice("m1", "s7", 1, gen)})
				publish(a.Flush())
			}
			b.ReportMetric(firstMS, "first-publish-ms")
			if tc.zones > 0 {
				b.ReportMetric(zonesMS, "zone-views-ms")
			}
		})
	}
}

// networkObjects are what puts member m on a network of its own: the
// network property, an east-west gateway Service and its tunnel Secret, in
// the gateway namespace.
func networkObjects(b *testing.B, ca *cptest.CA, member string, m, externalIPs int) []metav1.Object {
	b.Helper()
	leaf := ca.Gateway(b, "spiffe://eastwest.io/clusterset/x/cluster/"+member+"/role/gateway")
	crt, key := leaf.PEM(b)
	bundle, err := os.ReadFile(ca.File)
	if err != nil {
		b.Fatal(err)
	}
	ips := []string{fmt.Sprintf("192.0.2.%d", m+1)}
	for i := 1; i < externalIPs; i++ {
		ips = append(ips, fmt.Sprintf("198.%d.%d.%d", 18+m, i/250, i%250+1))
	}
	return []metav1.Object{
		&about.ClusterProperty{ObjectMeta: metav1.ObjectMeta{Name: about.PropertyNetwork}, Spec: about.ClusterPropertySpec{Value: "net-" + member}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: mcs.DefaultGatewayNamespace, Name: "eastwest-gateway", Labels: map[string]string{mcs.LabelGateway: "true"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: mcs.TunnelPortName, Port: 15443, Protocol: corev1.ProtocolTCP}}, ExternalIPs: ips}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: mcs.DefaultGatewayNamespace, Name: mcs.DefaultTunnelSecret}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: []byte(crt), corev1.TLSPrivateKeyKey: []byte(key), "ca.crt": bundle}},
	}
}

// BenchmarkPublishGatewayBackend is BenchmarkPublish for a Gateway with
// 1,000 HTTPRoutes, each to its own ServiceImport backend: one backend's
// EndpointSlice changes, the Gateway's view gets that backend's cluster
// and endpoints again, and nothing else of it is translated.
//
//	go test -run '^$' -bench BenchmarkPublishGatewayBackend -benchmem ./pkg/assemble
func BenchmarkPublishGatewayBackend(b *testing.B) {
	const routes = 1000
	a := assemble.New(assemble.Options{})
	c := cache.New(controlplane.NodeView)
	publish := func(p assemble.Plan) {
		if err := controlplane.Publish(c, p); err != nil {
			b.Fatal(err)
		}
	}
	apply := func(o metav1.Object) { _ = a.Apply(event.Event{Member: "m0", Op: event.OpUpsert, Object: o}) }
	_ = a.Apply(event.Event{Member: "m0", Op: event.OpJoin})
	apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})
	apply(&gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "eastwest"}, Spec: gwapiv1.GatewayClassSpec{ControllerName: "eastwest.io/gateway-controller"}})
	apply(&gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw"}, Spec: gwapiv1.GatewaySpec{GatewayClassName: "eastwest",
		Listeners: []gwapiv1.Listener{{Name: "http", Port: 8080, Protocol: gwapiv1.HTTPProtocolType}}}})
	group, kind := gwapiv1.Group("multicluster.x-k8s.io"), gwapiv1.Kind("ServiceImport")
	for i := range routes {
		svc := fmt.Sprint("s", i)
		apply(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}})
		apply(&mcsv1b1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc}})
		apply(benchSlice("m0", svc, 0, 0))
		path := "/" + svc
		apply(&gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc}, Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: "gw"}}},
			Rules: []gwapiv1.HTTPRouteRule{{
				Matches:     []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Value: &path}}},
				BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{BackendObjectReference: gwapiv1.BackendObjectReference{Group: &group, Kind: &kind, Name: gwapiv1.ObjectName(svc), Port: ptr.To(gwapiv1.PortNumber(80))}}}},
			}},
		}})
	}
	first := a.Flush()
	if len(first.Views) != 3 {
		b.Fatalf("views %v, want m0's client, gateway and Gateway ns/gw", first.Views)
	}
	publish(first)
	gen := 0
	b.ReportAllocs()
	for b.Loop() {
		gen++
		apply(benchSlice("m0", "s7", 0, gen))
		publish(a.Flush())
	}
}
