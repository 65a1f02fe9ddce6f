package multicluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
	"github.com/eastwest-dev/eastwest/test/kube"
	"github.com/eastwest-dev/eastwest/test/netns"
)

// Members from ClusterProfiles, served to a real Envoy and to gRPC-Go's
// xds:/// client: traffic through member ea's gateway keeps flowing,
// without one failed request, while both members' tokens are rotated and
// the old ones revoked and the write-back keeps writing; and a profile
// created is served: from the profile's creation to the Envoy and the
// gRPC client sending the member's traffic (timed over repeated joins,
// each after the profile was deleted and its member drained).
func TestClusterProfilesThroughEnvoy(t *testing.T) {
	clusters := kube.Start(t, "hub", "ea", "eb")
	inv := startInventory(t, clusters[0])
	ea, eb := &member{Cluster: clusters[1], mcs: mustMCS(t, clusters[1])}, &member{Cluster: clusters[2], mcs: mustMCS(t, clusters[2])}
	const ns = "envoy"
	tokens := map[string]string{}
	for _, m := range []*member{ea, eb} {
		apply(t, m.Cluster, "../../deploy/kubernetes/member-rbac.yaml")
		m.namespace(t, ns)
		tokens[m.Name] = boundToken(t, m.Cluster, "token-1")
		inv.token(t, m.Name, tokens[m.Name])
	}
	netNS := netns.New(t)
	pods := map[string]string{"ea/web-0": "10.214.11.1", "eb/solo-0": "10.214.12.1"}
	for name, ip := range pods {
		netNS.AddAddr(t, ip)
		envoytest.StartBackendWith(t, netNS.Listen, name, ip, 8080, 0, -1)
	}
	ea.service(t, clusterIPService(ns, "web"))
	ea.export(t, ns, "web")
	ea.podSlice(t, ns, "web", []string{pods["ea/web-0"]}, []bool{true})
	eb.service(t, clusterIPService(ns, "solo"))
	eb.export(t, ns, "solo")
	eb.podSlice(t, ns, "solo", []string{pods["eb/solo-0"]}, []bool{true})
	// A gRPC service of eb, for a proxyless client of ea.
	rpcIP := "10.214.12.2"
	netNS.AddAddr(t, rpcIP)
	startGRPCBackend(t, netNS, "eb/rpc-0", rpcIP+":9000")
	eb.service(t, clusterIPService(ns, "rpc", corev1.ServicePort{Name: "grpc", Port: 9000, Protocol: corev1.ProtocolTCP}))
	eb.export(t, ns, "rpc")
	eb.writeSlice(t, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "rpc-src", Labels: map[string]string{discoveryv1.LabelServiceName: "rpc"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(9000)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{rpcIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	})

	cfg := controlplane.Config{WriteBack: true, Resync: time.Minute, XDSAddress: netNS.HostIP + ":0",
		Profiles: &source.Profiles{Client: inv.cp, Namespace: inv.ns, ProviderFile: inv.provider}}
	cfg.Writer.GatewayPort = envoyGatewayPort
	app := cptest.StartWith(t, cfg)
	inv.profile(t, "ea", accessTo(t, ea.Cluster, "ea"), metav1.ConditionTrue, nil)
	memberStatus(t, app, "ea", synced)
	v := translate.View{Cluster: "ea", Role: translate.RoleGateway}
	envoy := envoytest.ForViewIn(t, netNS, app, v, "ea-gateway", true, nil)
	envoy.WaitSynced(t, app, "ea-gateway", v.String())
	addr := fmt.Sprintf("%s:%d", netNS.NSIP, envoyGatewayPort)
	answer := func(host string) (string, error) {
		code, body, err := envoytest.Get(envoytest.HTTPClient(false), addr, host+"."+ns+".svc.clusterset.local")
		if err != nil {
			return "", err
		}
		if code != 200 {
			return "", fmt.Errorf("%d %s", code, body)
		}
		return strings.Fields(body)[0], nil
	}
	servedBy := func(host, pod string) func() error {
		return func() error {
			got, err := answer(host)
			if err != nil {
				return err
			}
			if got != pod {
				return fmt.Errorf("answered by %q", got)
			}
			return nil
		}
	}
	testkit.Eventually(t, "web through ea's gateway", servedBy("web", "ea/web-0"))
	rpc := proxylessClient(t, netNS, app, "ea-client", "ea", "rpc."+ns+".svc.clusterset.local:9000")
	rpcBy := func() (string, error) {
		rctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		resp, err := rpc.UnaryCall(rctx, &testgrpc.SimpleRequest{FillServerId: true})
		if err != nil {
			return "", err
		}
		return resp.GetServerId(), nil
	}

	t.Run("a profile created is served", func(t *testing.T) {
		var viaEnvoy, viaGRPC []time.Duration
		for i := range 10 {
			start := time.Now()
			inv.profile(t, "eb", accessTo(t, eb.Cluster, "eb"), metav1.ConditionTrue, nil)
			var envoyAt, grpcAt time.Duration
			testkit.Eventually(t, "solo through ea's gateway and rpc through the gRPC client", func() error {
				if envoyAt == 0 && servedBy("solo", "eb/solo-0")() == nil {
					envoyAt = time.Since(start)
				}
				if grpcAt == 0 {
					if got, err := rpcBy(); err == nil && got == "eb/rpc-0" {
						grpcAt = time.Since(start)
					}
				}
				if envoyAt == 0 || grpcAt == 0 {
					return fmt.Errorf("Envoy after %v, gRPC after %v", envoyAt, grpcAt)
				}
				return nil
			})
			viaEnvoy, viaGRPC = append(viaEnvoy, envoyAt), append(viaGRPC, grpcAt)
			if i == 9 {
				break
			}
			if err := inv.cp.ApisV1alpha1().ClusterProfiles(inv.ns).Delete(ctx, "eb", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, "eb drained", func() error {
				if _, err := answer("solo"); err == nil {
					return fmt.Errorf("solo still served")
				}
				if _, err := rpcBy(); err == nil {
					return fmt.Errorf("rpc still served")
				}
				return nil
			})
		}
		for _, l := range []struct {
			to  string
			lat []time.Duration
		}{{"a real Envoy", viaEnvoy}, {"gRPC-Go's xds:/// client", viaGRPC}} {
			slices.Sort(l.lat)
			t.Logf("ClusterProfile created -> its member's endpoints carry traffic through %s: p50 %v, max (p99 of 10) %v, over %v",
				l.to, l.lat[len(l.lat)/2].Round(time.Millisecond), l.lat[len(l.lat)-1].Round(time.Millisecond), l.lat)
		}
	})

	t.Run("tokens rotated and revoked under traffic and write-back", func(t *testing.T) {
		ea.importIs(t, ns, "solo", nil)
		loop := testkit.StartLoop(t, 5*time.Millisecond, func() bool {
			got, err := answer("web")
			return err == nil && got == "ea/web-0"
		})
		failed := memberFailures(t, app, "ea") + memberFailures(t, app, "eb")
		for _, m := range []*member{ea, eb} {
			inv.token(t, m.Name, boundToken(t, m.Cluster, "token-2"))
			revoke(t, m.Cluster, "token-1", tokens[m.Name])
		}
		// The write-back writes into ea what changed in eb, with ea's
		// new token (eb's informers read it with eb's).
		for i := range 5 {
			ip := fmt.Sprintf("10.214.12.%d", 10+i)
			eb.podSlice(t, ns, "solo", []string{pods["eb/solo-0"], ip}, []bool{true, true})
			ea.mcsSliceHas(t, ns, "solo", ip)
		}
		loop.More(200)
		loop.Stop()
		t.Logf("%d requests through Envoy while both tokens rotated and were revoked; %d failed", loop.Sent(), loop.Failed())
		if loop.Failed() > 0 {
			t.Errorf("%d of %d requests failed", loop.Failed(), loop.Sent())
		}
		if n := memberFailures(t, app, "ea") + memberFailures(t, app, "eb"); n != failed {
			t.Errorf("%v write-back passes failed after the rotation (%+v)", n-failed, app.WriteBack().Retrying)
		}
		for _, name := range []string{"ea", "eb"} {
			memberStatus(t, app, name, synced)
		}
	})
}

// grpcBackend answers UnaryCall with its name, from inside a network
// namespace of the test.
type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (b *grpcBackend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: b.name}, nil
}

func startGRPCBackend(t testing.TB, ns *netns.NS, name, addr string) {
	t.Helper()
	l, err := ns.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &grpcBackend{name: name})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
}

// proxylessClient is gRPC-Go's xds:/// client of a member: it reaches the
// control plane from the host, and the backends from inside ns.
func proxylessClient(t testing.TB, ns *netns.NS, app *controlplane.App, nodeID, cluster, target string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "cluster": %q, "metadata": {"role": "client"}}}`, app.XDSAddr(), nodeID, cluster)
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			timeout := time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = time.Until(d)
			}
			return ns.Dial(addr, timeout)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}
