package multicluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// adsClient is an xDS client on a real gRPC ADS stream, subscribing by
// name as gRPC's xDS client does, in member cluster "a".
type adsClient struct {
	stream     discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node       *corev3.Node
	subscribed map[string][]string
}

func newADSClient(b *testing.B, addr string) *adsClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return &adsClient{stream: s, node: &corev3.Node{Id: "bench", Cluster: "a"}, subscribed: map[string][]string{}}
}

// await subscribes to one resource and returns when a response carries it
// and ok accepts it, acknowledging every response.
func (c *adsClient) await(typ, name string, ok func([]byte) bool) error {
	if !slices.Contains(c.subscribed[typ], name) {
		c.subscribed[typ] = append(c.subscribed[typ], name)
		req := &discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: typ, ResourceNames: c.subscribed[typ]}
		if err := c.stream.Send(req); err != nil {
			return err
		}
	}
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return err
		}
		done := false
		for _, r := range resp.Resources {
			if resp.TypeUrl == typ && ok(r.Value) {
				done = true
			}
		}
		if err := c.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.TypeUrl, ResourceNames: c.subscribed[resp.TypeUrl], VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func benchClusterSet(b *testing.B) (*member, *controlplane.App) {
	cs := kube.Start(b, "a", "b")
	app := cptest.StartWith(b, controlplane.Config{KubeconfigDir: kubeconfigDir(b, cs...), WriteBack: true})
	return &member{Cluster: cs[1], mcs: mustMCS(b, cs[1])}, app
}

func percentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	n := len(lat)
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(n-1, n*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEndpointSliceToClient measures the time from an EndpointSlice
// write in a member cluster's apiserver to the updated endpoints arriving
// at an xDS client (over a real gRPC ADS stream) in another member
// cluster: run with -benchtime 200x for 200 changes.
func BenchmarkEndpointSliceToClient(b *testing.B) {
	m, app := benchClusterSet(b)
	key := mcs.ServiceKey{Namespace: "bench", Name: "api"}
	m.service(b, clusterIPService(key.Namespace, key.Name))
	m.slice(b, key.Namespace, key.Name, true, "10.99.0.1")
	m.export(b, key.Namespace, key.Name)
	client := newADSClient(b, app.XDSAddr())
	sliceToClient(b, m, key, client)
}

// BenchmarkExportToListener measures the time from creating a ServiceExport
// (its Service already there) in a member cluster to an xDS client in
// another member cluster getting the service's listener: -benchtime 20x.
func BenchmarkExportToListener(b *testing.B) {
	m, app := benchClusterSet(b)
	client := newADSClient(b, app.XDSAddr())
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		key := mcs.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("new-%d", i)}
		m.service(b, clusterIPService(key.Namespace, key.Name))
		start := time.Now()
		m.export(b, key.Namespace, key.Name)
		name := translate.ListenerName(key, 80)
		err := client.await(resourcev3.ListenerType, name, func(v []byte) bool {
			var l listenerv3.Listener
			return proto.Unmarshal(v, &l) == nil && l.Name == name
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	percentiles(b, lat)
}

// BenchmarkEndpointSliceToGateway is BenchmarkEndpointSliceToClient for an
// Envoy implementing a Gateway API Gateway in member a whose HTTPRoute
// sends to a ServiceImport exported from b: an EndpointSlice written in b
// reaches the Gateway's Envoy (node role gateway-api). -benchtime 200x.
func BenchmarkEndpointSliceToGateway(b *testing.B) {
	cs := kube.Start(b, "a", "b")
	app := cptest.StartWith(b, controlplane.Config{KubeconfigDir: kubeconfigDir(b, cs...)})
	a, m := &member{Cluster: cs[0], mcs: mustMCS(b, cs[0])}, &member{Cluster: cs[1], mcs: mustMCS(b, cs[1])}
	key := mcs.ServiceKey{Namespace: "bench", Name: "api"}
	m.service(b, clusterIPService(key.Namespace, key.Name))
	m.slice(b, key.Namespace, key.Name, true, "10.99.0.1")
	m.export(b, key.Namespace, key.Name)
	a.namespace(b, key.Namespace)
	gw := gwclient.NewForConfigOrDie(a.Config).GatewayV1()
	if _, err := gw.GatewayClasses().Create(ctx, &gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "eastwest"},
		Spec: gwapiv1.GatewayClassSpec{ControllerName: "eastwest.io/gateway-controller"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := gw.Gateways("bench").Create(ctx, &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "gw"},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "eastwest", Listeners: []gwapiv1.Listener{{Name: "http", Port: 8080, Protocol: gwapiv1.HTTPProtocolType}}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	group, kind, port := gwapiv1.Group("multicluster.x-k8s.io"), gwapiv1.Kind("ServiceImport"), gwapiv1.PortNumber(80)
	route := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "r"}}
	route.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: "gw"}}
	route.Spec.Rules = []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{
		BackendObjectReference: gwapiv1.BackendObjectReference{Group: &group, Kind: &kind, Name: "api", Port: &port}}}}}}
	if _, err := gw.HTTPRoutes("bench").Create(ctx, route, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	client := newADSClient(b, app.XDSAddr())
	meta, _ := structpb.NewStruct(map[string]any{"role": "gateway-api", "gateway": "bench/gw"})
	client.node = &corev3.Node{Id: "bench-envoy", Cluster: "a", Metadata: meta}
	sliceToClient(b, m, key, client)
}

// sliceToClient writes a new endpoint into a slice of key in m, b.N times,
// and reports how long each takes to reach client.
func sliceToClient(b *testing.B, m *member, key mcs.ServiceKey, client *adsClient) {
	name := translate.ClusterName(key, 80)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		ip := fmt.Sprintf("10.%d.%d.%d", 100+i/65536, (i/256)%256, i%256)
		start := time.Now()
		m.slice(b, key.Namespace, key.Name, true, ip)
		err := client.await(resourcev3.EndpointType, name, func(v []byte) bool {
			var cla endpointv3.ClusterLoadAssignment
			if proto.Unmarshal(v, &cla) != nil {
				return false
			}
			for _, l := range cla.Endpoints {
				for _, e := range l.LbEndpoints {
					if e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == ip {
						return true
					}
				}
			}
			return false
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	percentiles(b, lat)
}

// BenchmarkLeaderHandover measures the time from stopping the write-back
// leader (as a pod's SIGTERM does) to the other replica leading, two
// replicas on one Lease of 3 s as TestLifecycle's: -benchtime 10x. Each
// round starts a new replica beside the one now leading.
func BenchmarkLeaderHandover(b *testing.B) {
	cs := kube.Start(b, "a")
	m := &member{Cluster: cs[0], mcs: mustMCS(b, cs[0])}
	m.namespace(b, "eastwest-system")
	dir := kubeconfigDir(b, cs...)
	replica := func() (*controlplane.App, func()) {
		cfg := controlplane.Config{KubeconfigDir: dir, WriteBack: true, Resync: time.Second}
		cfg.Election.Config, cfg.Election.Namespace, cfg.Election.Name = cs[0].Config, "eastwest-system", "eastwest-writeback"
		cfg.Election.LeaseDuration = 3 * time.Second
		return cptest.Run(b, cfg)
	}
	until := func(what string, ok func() bool) {
		deadline := time.Now().Add(time.Minute)
		for !ok() {
			if time.Now().After(deadline) {
				b.Fatalf("%s: not within a minute", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	first, stopLeader := replica()
	until("a first leader", first.Leading)
	var lat []time.Duration
	for b.Loop() {
		next, stopNext := replica()
		until("the new replica connected", func() bool { return next.WriteBack().Enabled })
		start := time.Now()
		stopLeader()
		until("the other replica leads", next.Leading)
		lat = append(lat, time.Since(start))
		stopLeader = stopNext
	}
	stopLeader()
	percentiles(b, lat)
}
