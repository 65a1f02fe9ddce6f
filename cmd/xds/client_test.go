package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/types"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/syncbuf"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/debug"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// startServe runs the control plane on the demo.
func startServe(t *testing.T) *controlplane.App {
	t.Helper()
	return cptest.Start(t, "../../examples/clusterset")
}

// status, dump and explain read a running control plane's debug endpoint
// and say clearly when what they ask for does not exist.
func TestDebugClientCommands(t *testing.T) {
	app := startServe(t)
	addr := app.DebugAddr()
	tests := map[string]struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		"status without clients": {[]string{"status", "--debug-address", addr}, 0, "(no xDS client connected)", ""},
		"status json":            {[]string{"status", "--debug-address", addr, "--json"}, 0, "[]", ""},
		"explain":                {[]string{"explain", "--debug-address", addr, "shop/cart"}, 0, "PortConflict", ""},
		"explain json":           {[]string{"explain", "--debug-address", addr, "--json", "shop/cart"}, 0, `"service": "shop/cart"`, ""},
		"explain shows routes":   {[]string{"explain", "--debug-address", addr, "shop/frontend"}, 0, "HTTPRoute shop/storefront in east", ""},
		"explain route status":   {[]string{"explain", "--debug-address", addr, "shop/frontend"}, 0, "ResolvedRefs=False (BackendNotFound): Service shop/legacy-frontend not found", ""},
		"explain unknown":        {[]string{"explain", "--debug-address", addr, "shop/nope"}, 1, "", "no member cluster exports shop/nope"},
		"explain bad name":       {[]string{"explain", "--debug-address", addr, "nope"}, 2, "", "xds explain nope: use NAMESPACE/NAME (default/nope, say)"},
		"explain flags after":    {[]string{"explain", "shop/cart", "--debug-address", addr}, 0, "PortConflict", ""},
		"explain two names":      {[]string{"explain", "--debug-address", addr, "shop/cart", "shop/web"}, 2, "", `xds explain takes one argument, the service as NAMESPACE/NAME (got ["shop/cart" "shop/web"])`},
		"status flags only":      {[]string{"status", "--debug-address", addr, "extra"}, 2, "", "xds status takes no arguments"},
		"members":                {[]string{"members", "--debug-address", addr}, 0, "east     east        demo        yes", ""},
		"members json":           {[]string{"members", "--debug-address", addr, "--json"}, 0, `"members"`, ""},
		"dump help names node":   {[]string{"dump", "-h"}, 0, "", "-node string"},
		"status help is asked":   {[]string{"status", "--help"}, 0, "", "Usage: xds status [--kubeconfig FILE] [flags]"},
		"version help":           {[]string{"version", "-h"}, 0, "", "Usage: xds version"},
		"--version":              {[]string{"--version"}, 0, "xds dev (revision", ""},
		"version takes nothing":  {[]string{"version", "now"}, 2, "", `xds version takes no arguments (got ["now"])`},
		"dump takes no argument": {[]string{"dump", "--debug-address", addr, "--node", "a", "b"}, 2, "", `xds dump takes no arguments (got ["b"]): name the client with --node`},
		"dump unknown node":      {[]string{"dump", "--debug-address", addr, "--node", "ghost"}, 1, "", `no connected client has node.id "ghost"`},
		"dump needs a node":      {[]string{"dump", "--debug-address", addr}, 2, "", "xds dump: --node is required"},
		"no server":              {[]string{"status", "--debug-address", "127.0.0.1:1"}, 1, "", "is `xds serve` running?"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// A gateway connected over SotW ADS and another over delta show up in
// `xds status` as SYNCED once they ACK, and `xds dump` prints what each is
// served.
func TestStatusAndDumpShowConnectedGateways(t *testing.T) {
	app := startServe(t)
	ads, ctx := adsClient(t, app)
	role, _ := structpb.NewStruct(map[string]any{"role": "gateway"})

	sotw, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "gw-sotw", Cluster: "east", Metadata: role}, TypeUrl: resourcev3.ClusterType}
	if err := sotw.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := sotw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) == 0 {
		t.Fatal("a gateway got no clusters")
	}
	if err := sotw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
		t.Fatal(err)
	}

	delta, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "gw-delta", Cluster: "west", Metadata: role}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	dresp, err := delta.Recv()
	if err != nil {
		t.Fatal(err)
	}
	gwListener := translate.GatewayListenerName(translate.DefaultGatewayPort)
	if len(dresp.Resources) != 1 || dresp.Resources[0].Name != gwListener {
		t.Fatalf("delta LDS for a gateway: %v", dresp.Resources)
	}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: dresp.Nonce}); err != nil {
		t.Fatal(err)
	}

	var out string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"status", "--debug-address", app.DebugAddr()}, &stdout, &stderr); code != 0 {
			t.Fatalf("status: %s", stderr.String())
		}
		out = stdout.String()
		if strings.Count(out, "SYNCED") >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{"gw-sotw", "gw-delta", "delta", "sotw"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "SYNCED") < 4 {
		t.Errorf("status does not show both gateways SYNCED:\n%s", out)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dump", "--debug-address", app.DebugAddr(), "--node", "gw-delta", "--type", "lds"}, &stdout, &stderr); code != 0 {
		t.Fatalf("dump: %s", stderr.String())
	}
	if !strings.Contains(strings.ReplaceAll(stdout.String(), " ", ""), `"name":"`+gwListener+`"`) {
		t.Errorf("dump lacks the gateway listener:\n%s", stdout.String())
	}
}

// An Envoy declaring role gateway-api and a Gateway eastwest programs gets
// that Gateway's listener; /debug/gateways lists the view and the
// statuses; a node naming a Gateway that does not exist gets nothing and
// xds status says why.
func TestGatewayAPINode(t *testing.T) {
	app := startServe(t)
	ads, ctx := adsClient(t, app)
	meta := func(gw string) *structpb.Struct {
		m, _ := structpb.NewStruct(map[string]any{"role": "gateway-api", "gateway": gw})
		return m
	}
	stream, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-public", Cluster: "east", Metadata: meta("shop/public")}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want := translate.GatewayAPIListenerName(types.NamespacedName{Namespace: "shop", Name: "public"}, 8080)
	if len(resp.Resources) != 1 {
		t.Fatalf("LDS for the Gateway's Envoy: %d resources", len(resp.Resources))
	}
	var l listenerv3.Listener
	if err := resp.Resources[0].UnmarshalTo(&l); err != nil || l.Name != want {
		t.Fatalf("LDS for the Gateway's Envoy: %v %v, want %s", l.Name, err, want)
	}

	ghost, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ghost.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-ghost", Cluster: "east", Metadata: meta("shop/ghost")}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	var out string
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out, "envoy-ghost") && time.Now().Before(deadline) {
		var stdout, stderr bytes.Buffer
		run([]string{"status", "--debug-address", app.DebugAddr()}, &stdout, &stderr)
		out = stdout.String()
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out, "no Gateway shop/ghost") {
		t.Errorf("xds status does not say why envoy-ghost gets nothing:\n%s", out)
	}

	body := get(t, "http://"+app.DebugAddr()+"/debug/gateways")
	for _, s := range []string{`"east/gateway-api/shop/public"`, `"kind": "HTTPRoute"`, `"reason": "BackendNotFound"`, `"kind": "GatewayClass"`} {
		if !strings.Contains(body, s) {
			t.Errorf("/debug/gateways lacks %s:\n%s", s, body)
		}
	}
	metrics := get(t, "http://"+app.DebugAddr()+"/metrics")
	if want := `eastwest_gatewayapi_status_conditions{condition="ResolvedRefs",kind="HTTPRoute",member="east",reason="BackendNotFound",status="False"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback test URL
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// `xds dump --type sds` shows what a Gateway's Envoy is served of its
// certificates with the key material replaced by a hash.
func TestDumpRedactsSecrets(t *testing.T) {
	app := cptest.Start(t, "../../testdata/gateway-https.in")
	ads, ctx := adsClient(t, app)
	stream, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := structpb.NewStruct(map[string]any{"role": "gateway-api", "gateway": "infra/tls"})
	name := translate.SecretName(types.NamespacedName{Namespace: "infra", Name: "secure-cert"})
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-tls", Cluster: "east", Metadata: meta}, TypeUrl: resourcev3.SecretType, ResourceNames: []string{name}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || len(resp.Resources) != 1 {
		t.Fatalf("SDS for the Gateway's Envoy: %v, %v", resp, err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.SecretType, ResourceNames: []string{name}, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
		t.Fatal(err)
	}
	var out string
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out, name) && time.Now().Before(deadline) {
		var stdout, stderr bytes.Buffer
		run([]string{"dump", "--debug-address", app.DebugAddr(), "--node", "envoy-tls", "--type", "sds"}, &stdout, &stderr)
		out = stdout.String()
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out, "[redacted sha256:") || strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "LS0t") {
		t.Errorf("xds dump --type sds:\n%s", out)
	}
}

// adsClient connects to a test server's xDS port; the connection and the
// context (10 s, a guard against hangs) end with the test.
func adsClient(t *testing.T, app *controlplane.App) (discoveryv3.AggregatedDiscoveryServiceClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return discoveryv3.NewAggregatedDiscoveryServiceClient(conn), ctx
}

// `xds explain` shows each view's path to each member: direct on its own
// network, through which gateways of which network when it tunnels, and
// which members it leaves out and why (a proxyless client cannot tunnel;
// central, on east's network, has no gateway for west to reach): the
// reasons translate gave when it left them out, and the tier it placed
// each served member in.
func TestExplainShowsNetworkPaths(t *testing.T) {
	app := cptest.Start(t, "../../testdata/networks.in")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"explain", "--debug-address", app.DebugAddr(), "shop/cart"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	// view returns the lines under a view's heading ("   <view>"), which
	// are indented further.
	view := func(name string) string {
		var b strings.Builder
		in := false
		for _, line := range strings.Split(out, "\n") {
			switch {
			case line == "   "+name:
				in = true
			case in && strings.HasPrefix(line, "     "):
				b.WriteString(line + "\n")
			default:
				in = false
			}
		}
		if b.Len() == 0 {
			t.Fatalf("no view %s in:\n%s", name, out)
		}
		return b.String()
	}
	for _, tc := range []struct{ view, want string }{
		{"east/gateway", "priority 0  east/z1      weight 3  3 healthy, 0 draining  direct"},
		{"east/gateway", "priority 1  central/z1   weight 3  3 healthy, 0 draining  direct"},
		{"east/gateway", "priority 1  west         weight 3  via west's gateways 198.51.100.7:15443, 198.51.100.8:15443, their host names (cluster eastwest-gateways:west, resolved by Envoy) (network west, mutual TLS, west's gateway identity only)"},
		{"east/client", "priority 1  west         weight 3  via this member's gateways at 10.96.0.10:15080, then west's (network west)"},
		{"west/client", "central (network east) left out: a proxyless client reaches other networks through its member's east-west gateways, and this member has none it can use"},
		{"east/gateway", "[this member]"},
		{"east/gateway", "[other members]"},
		{"central/client", "west (network west) left out: a proxyless client reaches other networks through its member's east-west gateways, and this member has none it can use"},
		{"west/gateway", "central (network east) left out: central: network east has no east-west gateway address"},
		{"central/gateway", "west (network west) left out: this member's east-west gateways hold no usable tunnel certificate: it has no east-west gateway Service"},
	} {
		if got := view(tc.view); !strings.Contains(got, tc.want) {
			t.Errorf("%s: want %q in:\n%s", tc.view, tc.want, got)
		}
	}
}

// An export whose Service is not found says why when eastwest knows: the
// member's Service was rejected (and where), or the export is in default.
func TestExplainSaysWhyTheServiceIsMissing(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"east/bad.yaml": `apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {ports: [{name: http, port: 70000}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
`,
		"east/default.yaml": `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: web}
`,
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	app := cptest.Start(t, dir)
	for svc, want := range map[string]string{
		"shop/cart":   "the Service is in " + filepath.Join(dir, "east", "bad.yaml") + " but was rejected",
		"default/web": "this export is in namespace default",
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"explain", "--debug-address", app.DebugAddr(), svc}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), want) {
			t.Errorf("explain %s: exit %d, %q; want %q in:\n%s", svc, code, stderr.String(), want, stdout.String())
		}
	}
}

// startWatch runs `xds watch` with args until the test ends.
func startWatch(t *testing.T, args ...string) (out, log *syncbuf.Buffer) {
	t.Helper()
	out, log = &syncbuf.Buffer{}, &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- watchCommand(ctx, args, out, log) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("watch exited %d:\n%s", code, log.String())
		}
	})
	return out, log
}

// within is testkit.Eventually for a real server's answer.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, what, testkit.Holds(cond))
}

// watchStatus is `xds status` of app, for the watch tests.
func watchStatus(app *controlplane.App) string {
	var status bytes.Buffer
	run([]string{"status", "--debug-address", app.DebugAddr()}, &status, io.Discard)
	return status.String()
}

// `xds watch` is an xDS client a newcomer can run: it shows up SYNCED in
// `xds status` and prints the endpoints it gets, by priority, and each
// change as it comes.
func TestWatchIsASyncedClient(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/clusterset")); err != nil {
		t.Fatal(err)
	}
	app := cptest.Start(t, dir)
	out, _ := startWatch(t, "--xds-address", app.XDSAddr(), "--node-cluster", "east", "--node", "newcomer")
	within(t, "watch SYNCED with east's endpoints", func() bool {
		st := watchStatus(app)
		return strings.Contains(st, "newcomer") && strings.Contains(st, "SYNCED") && strings.Contains(out.String(), "cart.shop.svc.clusterset.local:80  p0 east")
	})
	// An export that goes away is said once (its endpoints and its
	// cluster are both removed), and the watch stays SYNCED.
	if err := os.Remove(filepath.Join(dir, "west", "ledger.yaml")); err != nil {
		t.Fatal(err)
	}
	const removed = "ledger.payments.svc.clusterset.local:7000  removed"
	within(t, "the removed export said, SYNCED", func() bool {
		return strings.Contains(out.String(), removed) && strings.Contains(watchStatus(app), "SYNCED")
	})
	if n := strings.Count(out.String(), removed); n != 1 {
		t.Errorf("the removal was said %d times, want once:\n%s", n, out.String())
	}
}

// `xds watch --zone` is a client that says its Kubernetes zone
// (node.locality.sub_zone): the control plane makes its zone view when
// it connects, and it is served there, SYNCED, with east's endpoints.
func TestWatchInAZone(t *testing.T) {
	app := cptest.Start(t, "../../examples/clusterset")
	out, _ := startWatch(t, "--xds-address", app.XDSAddr(), "--node-cluster", "east", "--zone", "z1", "--node", "zoned")
	within(t, "watch SYNCED in view east/client@z1", func() bool {
		for _, c := range app.Tracker.Clients() {
			if c.NodeID == "zoned" && c.View == "east/client@z1" {
				return strings.Contains(watchStatus(app), "SYNCED") && strings.Contains(out.String(), "cart.shop.svc.clusterset.local:80  p0 east")
			}
		}
		return false
	})
}

// `xds watch` waits for a control plane that is not up yet and outlives
// a restart, as Envoy does: it connects again, gets every endpoint again
// (a new stream starts from nothing) and is SYNCED with the new control
// plane.
func TestWatchReconnects(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/clusterset")); err != nil {
		t.Fatal(err)
	}
	// Before the control plane is up, its address accepts connections
	// and closes them at once: the watch must try, fail, and wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	tried := make(chan struct{})
	go func() {
		for first := true; ; first = false {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
			if first {
				close(tried)
			}
		}
	}()
	const line = "cart.shop.svc.clusterset.local:80  p0 east"
	out, log := startWatch(t, "--xds-address", addr, "--node-cluster", "east", "--node", "returning")
	select {
	case <-tried:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch never tried to connect")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := controlplane.Config{Dir: dir, XDSAddress: addr}
	_, stop := cptest.Run(t, cfg)
	within(t, "the first control plane's endpoints", func() bool { return strings.Count(out.String(), line) == 1 })
	// It said it could not reach the address, then that it connected.
	if l := log.String(); !strings.Contains(l, "cannot reach "+addr) || strings.Index(l, "cannot reach") > strings.Index(l, "connected to "+addr) {
		t.Errorf("the watch did not say it could not reach the control plane, then that it connected:\n%s", l)
	}
	stop()
	within(t, "the watch says the stream ended", func() bool { return strings.Contains(log.String(), "connecting again") })
	app, _ := cptest.Run(t, cfg)
	within(t, "the second control plane's endpoints, SYNCED", func() bool {
		st := watchStatus(app)
		return strings.Count(out.String(), line) == 2 && strings.Contains(st, "returning") && strings.Contains(st, "SYNCED")
	})
	within(t, "connected again, said", func() bool { return strings.Count(log.String(), "connected to "+addr) >= 2 })
}

// A draining endpoint is marked in what `xds watch` prints.
func TestWatchMarksDraining(t *testing.T) {
	cla := &endpointv3.ClusterLoadAssignment{Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality: &corev3.Locality{Region: "east"},
		LbEndpoints: []*endpointv3.LbEndpoint{
			lbEndpoint("10.0.0.1", corev3.HealthStatus_HEALTHY),
			lbEndpoint("10.0.0.2", corev3.HealthStatus_DRAINING),
		},
	}}}
	if got, want := describeEndpoints(cla), "p0 east w0 [10.0.0.1:80 10.0.0.2:80(draining)]"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

func lbEndpoint(ip string, health corev3.HealthStatus) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HealthStatus: health, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}},
	}}}
}

// A node the control plane cannot serve (a cluster that is not a member)
// gets nothing: the watch says where the reason is instead of staying
// silent, and goes on waiting (the member may join).
func TestWatchSaysWhereToLookWhenNothingComes(t *testing.T) {
	app := startServe(t)
	_, log := startWatch(t, "--xds-address", app.XDSAddr(), "--node-cluster", "nowhere", "--node", "lost")
	within(t, "the hint", func() bool {
		return strings.Contains(log.String(), "`xds status` says why the control plane sends node lost nothing")
	})
	if st := watchStatus(app); !strings.Contains(st, `cluster "nowhere" is not a member`) || !strings.Contains(st, "UNSERVED") {
		t.Errorf("xds status does not say it is unserved and why:\n%s", st)
	}
}

// `xds explain NS/NAME --node ID` answers for one connected client: only
// its view, what it has acknowledged of it, and why it gets nothing when
// it does.
func TestExplainForOneNode(t *testing.T) {
	app := startServe(t)
	for _, w := range [][]string{
		{"--node-cluster", "east", "--role", "gateway", "--node", "gw-east"},
		{"--node-cluster", "central", "--node", "client-central"},
		{"--node-cluster", "nowhere", "--node", "lost"},
	} {
		startWatch(t, append([]string{"--xds-address", app.XDSAddr()}, w...)...)
	}
	// The Envoy of Gateway shop/public: its view has only its routes'
	// backends.
	ads, ctx := adsClient(t, app)
	stream, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := structpb.NewStruct(map[string]any{"role": "gateway-api", "gateway": "shop/public"})
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "public-envoy", Cluster: "east", Metadata: meta}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// Every client the cases name is connected, and the two watches whose
	// rows the cases read have acknowledged everything (the Envoy stream
	// above is not SYNCED: it sends no ACK; a count of SYNCED rows let a
	// case read gw-east still STALE).
	within(t, "every watch connected", func() bool {
		st := watchStatus(app)
		for _, node := range []string{"gw-east", "client-central", "lost", "public-envoy"} {
			if !strings.Contains(st, node+" ") {
				return false
			}
		}
		for _, l := range strings.Split(st, "\n") {
			if (strings.HasPrefix(l, "gw-east ") || strings.HasPrefix(l, "client-central ")) && !strings.Contains(l, "SYNCED") {
				return false
			}
		}
		return true
	})
	tests := map[string]struct {
		args       []string
		code       int
		want, not  []string
		wantStderr string
	}{
		"a gateway's view alone": {[]string{"shop/cart", "--node", "gw-east"}, 0,
			[]string{"as node gw-east (view east/gateway) sees it", "   east/gateway\n", "priority 0  east", "gw-east  east/gateway  SYNCED  has 4/4 current"},
			[]string{"central/client", "west/gateway", "east/client", "client-central"}, ""},
		"a client's view": {[]string{"shop/cart", "--node", "client-central"}, 0,
			[]string{"as node client-central (view central/client) sees it", "   central/client\n", "client-central  central/client"},
			[]string{"east/client", "west/gateway", "gw-east"}, ""},
		"a member without the namespace": {[]string{"payments/ledger", "--node", "client-central"}, 0,
			[]string{"imported in [east west]", "member central does not import the service: namespace payments does not exist there", "client-central  central/client"},
			[]string{"central/client\n     CDS"}, ""},
		"a view that serves nothing of the service": {[]string{"payments/ledger", "--node", "public-envoy"}, 0,
			[]string{"as node public-envoy (view east/gateway-api/shop/public) sees it", "view east/gateway-api/shop/public has nothing of the service (a gateway-api view carries only what its role uses)", "public-envoy  east/gateway-api/shop/public"},
			[]string{"east/client", "east/gateway\n"}, ""},
		"a node that is served nothing": {[]string{"shop/cart", "--node", "lost"}, 1, nil, nil,
			`node "lost" is served nothing: cluster "nowhere" is not a member`},
		"a node that is not connected": {[]string{"shop/cart", "--node", "nobody"}, 1, nil, nil,
			`no connected client has node.id "nobody"`},
		"json": {[]string{"shop/cart", "--node", "gw-east", "--json"}, 0, []string{`"node": "gw-east"`, `"nodeView": "east/gateway"`, `"view": "east/gateway"`}, []string{`"view": "central/client"`}, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"explain", "--debug-address", app.DebugAddr()}, tt.args...), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tt.code, stderr.String(), tt.wantStderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("want %q in:\n%s", w, stdout.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(stdout.String(), n) {
					t.Errorf("%q should not be in:\n%s", n, stdout.String())
				}
			}
		})
	}
}

// `xds probe ready` prints the endpoint's reason once: "not ready: ..."
// was doubled ("not ready: not ready: ...").
func TestProbeSaysTheReasonOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, "not ready: waiting for the initial sync of kubeconfig:east", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "a publish has been owed for 3m0s", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for arg, want := range map[string]string{
		"ready":   "not ready: waiting for the initial sync of kubeconfig:east\n",
		"healthy": "not healthy: a publish has been owed for 3m0s\n",
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"probe", arg, "--debug-address", addr}, &stdout, &stderr); code != 1 || stderr.String() != want {
			t.Errorf("probe %s: exit %d, stderr %q; want 1 and %q", arg, code, stderr.String(), want)
		}
	}
}

// With several replicas and no --node, `xds explain` explains the service
// as the first replica does and lists the clients of every replica, each
// named with its replica: each replica knows only the clients connected
// to it, so one replica's list alone hid half the gateways.
func TestExplainGathersEveryReplicasClients(t *testing.T) {
	reps := make([]replica, 2)
	for i, name := range []string{"eastwest-a", "eastwest-b"} {
		app := startServe(t)
		ads, ctx := adsClient(t, app)
		role, _ := structpb.NewStruct(map[string]any{"role": "gateway"})
		st, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "gw-of-" + name, Cluster: "east", Metadata: role}, TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		reps[i] = replica{name: name, c: &debugClient{base: "http://" + app.DebugAddr(), http: http.DefaultClient}}
	}
	for _, asJSON := range []bool{false, true} {
		var stdout, stderr bytes.Buffer
		if code := explainEveryReplica(reps, url.Values{"service": {"shop/cart"}}, asJSON, &stdout, &stderr); code != 0 {
			t.Fatalf("json=%v: exit %d: %s", asJSON, code, stderr.String())
		}
		out := stdout.String()
		if asJSON {
			var e debug.Explanation
			if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range e.Clients {
				got[c.Node] = c.Replica
			}
			if got["gw-of-eastwest-a"] != "eastwest-a" || got["gw-of-eastwest-b"] != "eastwest-b" {
				t.Errorf("JSON clients and their replicas: %v", got)
			}
			continue
		}
		for _, name := range []string{"eastwest-a", "eastwest-b"} {
			if !regexp.MustCompile(`(?m)^   ` + name + `\s+gw-of-` + name + `\s+east/gateway\s`).MatchString(out) {
				t.Errorf("no row of %s's gateway, named with its replica:\n%s", name, out)
			}
		}
		if !strings.Contains(out, "1. ") {
			t.Errorf("not the explanation:\n%s", out)
		}
	}
}
