package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// backend is a gRPC server standing for one pod: it answers UnaryCall
// with its name as server_id.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	name string
	addr *net.TCPAddr
	srv  *grpc.Server
}

func (b *backend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: b.name}, nil
}

// EmptyCall answers with its name in the server-id response header: a
// second method, for routes that match on the method.
func (b *backend) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("server-id", b.name))
	return &testgrpc.Empty{}, nil
}

// emptyCall calls EmptyCall and returns the backend that answered.
func emptyCall(c testgrpc.TestServiceClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var md metadata.MD
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	if v := md.Get("server-id"); len(v) == 1 {
		return v[0], nil
	}
	return "", fmt.Errorf("no server-id header")
}

// startBackend listens on ip (a 127.0.0.x address) on a free port.
func startBackend(t testing.TB, name, ip string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	b := &backend{name: name, addr: l.Addr().(*net.TCPAddr), srv: grpc.NewServer()}
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go func() { _ = b.srv.Serve(l) }()
	t.Cleanup(b.srv.Stop)
	return b
}

// controlPlane is the real control plane serving a ClusterSet folder.
type controlPlane struct {
	t     testing.TB
	dir   string
	app   *controlplane.App
	debug string
}

func startControlPlane(t testing.TB, dir string) *controlPlane {
	t.Helper()
	app := cptest.Start(t, dir)
	return &controlPlane{t: t, dir: dir, app: app, debug: "http://" + app.DebugAddr()}
}

// served lists every resource (type, name, version) of every view.
func (cp *controlPlane) served() string {
	var b strings.Builder
	for _, v := range cp.app.Writer.Snapshot().Views {
		for _, typ := range translate.TypeOrder() {
			for _, r := range cp.app.Cache.Resources(v.String(), typ).Resources {
				fmt.Fprintf(&b, "%s %s %s %s\n", v, typ, r.Name, r.Version)
			}
		}
	}
	return b.String()
}

// get reads a debug endpoint.
func (cp *controlPlane) get(path string) string {
	cp.t.Helper()
	resp, err := http.Get(cp.debug + path)
	if err != nil {
		cp.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// write saves a file of the ClusterSet folder (testkit.WriteFile).
func (cp *controlPlane) write(rel, content string) {
	cp.t.Helper()
	testkit.WriteFile(cp.t, filepath.Join(cp.dir, rel), content)
}

func (cp *controlPlane) remove(rel string) {
	cp.t.Helper()
	if err := os.Remove(filepath.Join(cp.dir, rel)); err != nil {
		cp.t.Fatal(err)
	}
}

// xdsClient is gRPC-Go's xDS client, with its own bootstrap: a node in one
// member cluster.
func (cp *controlPlane) xdsClient(t testing.TB, nodeID, cluster, target string) testgrpc.TestServiceClient {
	t.Helper()
	return cp.xdsClientIn(t, nodeID, cluster, "", target)
}

// xdsClientIn is xdsClient for a client that says it runs in a
// Kubernetes zone (node.locality.sub_zone; "": none).
func (cp *controlPlane) xdsClientIn(t testing.TB, nodeID, cluster, zone, target string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "cluster": %q, "metadata": {"role": "client"}, "locality": {"sub_zone": %q}}
}`, cp.app.XDSAddr(), nodeID, cluster, zone)
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// call sends one RPC and returns the backend that answered or the error.
func call(c testgrpc.TestServiceClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}

// spread sends n RPCs and counts answers per backend ("error" for failures).
func spread(c testgrpc.TestServiceClient, n int) map[string]int {
	out := map[string]int{}
	for range n {
		name, err := call(c, 2*time.Second)
		if err != nil {
			name = "error"
		}
		out[name]++
	}
	return out
}

// eventually is testkit.Eventually for an RPC condition, polled every
// 5 ms (the time it took is what the tests and benchmarks report).
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return testkit.Eventually(t, what, testkit.Holds(cond), testkit.Poll{Every: 5 * time.Millisecond, Within: timeout})
}

// ClusterSet folder content.

func service(name string, ports ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: demo}\nspec:\n  ports:\n", name)
	for _, p := range ports {
		n, num, _ := strings.Cut(p, ":")
		fmt.Fprintf(&b, "  - {name: %s, port: %s, appProtocol: kubernetes.io/h2c}\n", n, num)
	}
	return b.String()
}

func export(name string) string {
	return fmt.Sprintf("apiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: %s, namespace: demo}\n", name)
}

// slices lists backends as the endpoints of one port of a service, one
// EndpointSlice per backend (each listens on its own port).
func slices(svc, portName string, ready bool, backends ...*backend) string {
	var docs []string
	for _, be := range backends {
		docs = append(docs, fmt.Sprintf("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s-%s, namespace: demo, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nports: [{name: %s, port: %d, protocol: TCP}]\nendpoints:\n- addresses: [%q]\n  conditions: {ready: %v}\n",
			svc, be.name, svc, portName, be.addr.Port, be.addr.IP.String(), ready))
	}
	return strings.Join(docs, "---\n")
}

func docs(parts ...string) string { return strings.Join(parts, "---\n") }
