package controlplane_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/identity"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

func node(id, cluster, role, gateway string) *corev3.Node {
	fields := map[string]*structpb.Value{}
	if role != "" {
		fields["role"] = structpb.NewStringValue(role)
	}
	if gateway != "" {
		fields["gateway"] = structpb.NewStringValue(gateway)
	}
	return &corev3.Node{Id: id, Cluster: cluster, Metadata: &structpb.Struct{Fields: fields}}
}

// The identity a certificate must carry for each kind of client, and
// what the policy makes of certificates that name something else: only
// an exact match of ClusterSet, cluster, role and Gateway is allowed.
func TestIdentityPolicy(t *testing.T) {
	p := controlplane.IdentityPolicy{Required: true, ClusterSet: "prod"}
	gw := node("gw", "east", "gateway", "")
	api := node("api", "east", "gateway-api", "infra/tls")
	verified := func(uris ...string) context.Context {
		// The SANs as a certificate writes them (Go would normalize a
		// parsed URL: SPIFFE:// to spiffe://).
		cert := &x509.Certificate{Extensions: []pkix.Extension{identity.SubjectAltNameExtension(uris...)}}
		info := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}}
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 5000}, AuthInfo: info})
	}
	plain := func(ip net.IP) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: ip, Port: 5000}})
	}
	tests := map[string]struct {
		policy controlplane.IdentityPolicy
		ctx    context.Context
		node   *corev3.Node
		typ    string
		code   codes.Code
	}{
		"gateway identity":    {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.OK},
		"one of several SANs": {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/west/role/gateway", "spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.OK},
		"other cluster":       {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/west/role/gateway"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"other role":          {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/client"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"other clusterset":    {p, verified("spiffe://eastwest.io/clusterset/test/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"other trust domain":  {p, verified("spiffe://evil.example/clusterset/prod/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"trailing segments":   {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway/extra"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		// Finding 5 of the trust-boundaries issue: none of these is a
		// SPIFFE ID; each was served as east's gateway.
		"a query":                                {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway?/role/client"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"a fragment":                             {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway#/role/client"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"user info":                              {p, verified("spiffe://attacker@eastwest.io/clusterset/prod/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"an upper-case scheme":                   {p, verified("SPIFFE://eastwest.io/clusterset/prod/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"percent-encoding":                       {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/%65ast/role/gateway"), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"an encoded slash":                       {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway-api/gateway/infra%2Ftls"), api, resourcev3.SecretType, codes.PermissionDenied},
		"no identity in the certificate":         {p, verified(), gw, resourcev3.ClusterType, codes.PermissionDenied},
		"no certificate":                         {p, plain(net.IPv4(127, 0, 0, 1)), gw, resourcev3.ClusterType, codes.Unauthenticated},
		"gateway-api identity reads its secrets": {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway-api/gateway/infra/tls"), api, resourcev3.SecretType, codes.OK},
		"another Gateway's identity":             {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway-api/gateway/infra/other"), api, resourcev3.SecretType, codes.PermissionDenied},
		"a gateway claiming a Gateway":           {p, verified("spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway"), api, resourcev3.SecretType, codes.PermissionDenied},
		"any clusterset when none is set":        {controlplane.IdentityPolicy{Required: true}, verified("spiffe://eastwest.io/clusterset/whatever/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.OK},
		"own trust domain":                       {controlplane.IdentityPolicy{Required: true, TrustDomain: "corp.example"}, verified("spiffe://corp.example/clusterset/x/cluster/east/role/gateway"), gw, resourcev3.ClusterType, codes.OK},
		"no mTLS: any node on loopback":          {controlplane.IdentityPolicy{}, plain(net.IPv4(127, 0, 0, 1)), api, resourcev3.SecretType, codes.OK},
		"no mTLS: config for anyone":             {controlplane.IdentityPolicy{}, plain(net.IPv4(10, 1, 2, 3)), api, resourcev3.ClusterType, codes.OK},
		"no mTLS: no secrets off loopback":       {controlplane.IdentityPolicy{}, plain(net.IPv4(10, 1, 2, 3)), api, resourcev3.SecretType, codes.PermissionDenied},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, auth := tc.policy.Authenticate(tc.ctx)
			if got := status.Code(auth(tc.node, tc.typ)); got != tc.code {
				t.Errorf("got %v, want %v", got, tc.code)
			}
		})
	}
	want := "spiffe://eastwest.io/clusterset/prod/cluster/east/role/gateway-api/gateway/infra/tls"
	if got := p.IdentityURI("prod", translate.View{Cluster: "east", Role: translate.RoleGatewayAPI, Gateway: "infra/tls"}); got != want {
		t.Errorf("IdentityURI = %s, want %s", got, want)
	}
}

// Over real mutual TLS, with certificates made by the test: a client is
// served the node its certificate names, and refused (PermissionDenied,
// with the reason in /debug/refused) for any other; a Gateway's TLS keys
// reach only that Gateway's Envoy.
func TestMutualTLSBindsNodesToCertificates(t *testing.T) {
	ca := cptest.NewCA(t)
	srv := ca.Server(t)
	cfg := controlplane.Config{Dir: "../../testdata/gateway-https.in"}
	cfg.XDSTLS = controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.File}
	app := cptest.StartWith(t, cfg)

	const prefix = "spiffe://eastwest.io/clusterset/any/cluster/east/role/"
	gatewayCert := ca.Client(t, prefix+"gateway")
	tlsCert := ca.Client(t, prefix+"gateway-api/gateway/infra/tls")
	ask := func(cert *cptest.Leaf, n *corev3.Node, typ string) (*discoveryv3.DeltaDiscoveryResponse, error) {
		t.Helper()
		cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{cert.TLS}
		}
		conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cptest.DeltaFirst(ctx, conn, n, typ)
	}
	tests := map[string]struct {
		cert    *cptest.Leaf
		node    *corev3.Node
		typ     string
		code    codes.Code
		secrets int
	}{
		"gateway as itself":                 {&gatewayCert, node("gw", "east", "gateway", ""), resourcev3.ListenerType, codes.OK, 0},
		"gateway as another cluster":        {&gatewayCert, node("gw", "west", "gateway", ""), resourcev3.ClusterType, codes.PermissionDenied, 0},
		"gateway as the Gateway's Envoy":    {&gatewayCert, node("gw", "east", "gateway-api", "infra/tls"), resourcev3.SecretType, codes.PermissionDenied, 0},
		"the Gateway's Envoy gets its keys": {&tlsCert, node("tls", "east", "gateway-api", "infra/tls"), resourcev3.SecretType, codes.OK, 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := ask(tc.cert, tc.node, tc.typ)
			if status.Code(err) != tc.code {
				t.Fatalf("err %v, want %v", err, tc.code)
			}
			if tc.code != codes.OK {
				return
			}
			if tc.typ == resourcev3.SecretType && len(resp.GetResources()) != tc.secrets {
				t.Errorf("%d secrets, want %d", len(resp.GetResources()), tc.secrets)
			}
			if tc.typ == resourcev3.ListenerType && len(resp.GetResources()) == 0 {
				t.Error("no listeners served")
			}
		})
	}
	// Without a client certificate the handshake itself fails.
	if _, err := ask(nil, node("x", "east", "gateway", ""), resourcev3.ClusterType); err == nil {
		t.Error("a client without a certificate was served")
	}

	resp, err := http.Get("http://" + app.DebugAddr() + "/debug/refused")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var refused []cache.Refused
	if err := json.Unmarshal(body, &refused); err != nil {
		t.Fatal(err)
	}
	if len(refused) != 2 {
		t.Fatalf("/debug/refused lists %d refusals, want 2: %s", len(refused), body)
	}
	for _, r := range refused {
		if r.Reason != cache.ReasonIdentity || !strings.Contains(r.Error, "does not name") || len(r.Peer.Identities) != 1 {
			t.Errorf("refusal %+v does not say which identity was refused and why", r)
		}
	}
}

// A plaintext server (the loopback demo) trusts any node but serves
// secrets to loopback peers only; a made-up type ends the stream with
// InvalidArgument.
func TestPlaintextStreamsAreCheckedToo(t *testing.T) {
	app := cptest.Start(t, "../../testdata/gateway-https.in")
	conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recv := func(typ string) (*discoveryv3.DeltaDiscoveryResponse, error) {
		return cptest.DeltaFirst(ctx, conn, node("tls", "east", "gateway-api", "infra/tls"), typ)
	}
	if resp, err := recv(resourcev3.SecretType); err != nil || len(resp.GetResources()) == 0 {
		t.Errorf("loopback client: %v, %d secrets", err, len(resp.GetResources()))
	}
	if _, err := recv("type.googleapis.com/made.Up"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("made-up type: %v, want InvalidArgument", err)
	}
}

// Finding 4 of the trust-boundaries issue: with one CA for the whole
// ClusterSet, anyone who could get a certificate from it (every member
// admin, any user allowed a Certificate of the shared ClusterIssuer)
// could mint another member's gateway identity, and was then served that
// member's tunnel key. With the operator's trust anchors
// (--trust-anchors), a member's issuer vouches for that member's
// identities alone: west's CA minting east's gateway identity is refused,
// east's own is served, and the server needs no shared client CA.
func TestTrustAnchorsBindIdentitiesToTheirMembersIssuer(t *testing.T) {
	serving, east, west := cptest.NewCA(t), cptest.NewCA(t), cptest.NewCA(t)
	srv := serving.Server(t)
	anchors := t.TempDir()
	for m, ca := range map[string]*cptest.CA{"east": east, "west": west} {
		b, err := os.ReadFile(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(anchors, m+".pem"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := controlplane.Config{Dir: "../../testdata/gateway-https.in", TrustAnchors: anchors}
	cfg.XDSTLS = controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile}
	app := cptest.StartWith(t, cfg)
	const eastGateway = "spiffe://eastwest.io/clusterset/any/cluster/east/role/gateway"
	ask := func(cert cptest.Leaf, n *corev3.Node) error {
		t.Helper()
		conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: serving.Pool, Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cptest.DeltaFirst(ctx, conn, n, resourcev3.ClusterType)
		return err
	}
	tests := map[string]struct {
		cert cptest.Leaf
		node *corev3.Node
		code codes.Code
	}{
		"east's issuer, east's gateway": {east.Client(t, eastGateway), node("gw", "east", "gateway", ""), codes.OK},
		"west's issuer minting east's":  {west.Client(t, eastGateway), node("gw", "east", "gateway", ""), codes.PermissionDenied},
		"east's issuer, east's client":  {east.Client(t, "spiffe://eastwest.io/clusterset/any/cluster/east/role/client"), node("c", "east", "client", ""), codes.OK},
		"west's issuer, east's client":  {west.Client(t, "spiffe://eastwest.io/clusterset/any/cluster/east/role/client"), node("c", "east", "client", ""), codes.PermissionDenied},
		"the serving CA is no member's": {serving.Client(t, eastGateway), node("gw", "east", "gateway", ""), codes.Unavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ask(tc.cert, tc.node)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("err %v, want %v", err, tc.code)
			}
			if tc.code == codes.PermissionDenied && !strings.Contains(err.Error(), "trust anchor") {
				t.Errorf("the refusal does not say why: %v", err)
			}
		})
	}
}

// The trust anchors are read again while serving: a CA added to a
// member's anchors (a ConfigMap key changed) is trusted without a
// restart.
func TestTrustAnchorsReload(t *testing.T) {
	serving, east, west := cptest.NewCA(t), cptest.NewCA(t), cptest.NewCA(t)
	srv := serving.Server(t)
	anchors := t.TempDir()
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(anchors, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pemOf := func(ca *cptest.CA) []byte {
		b, err := os.ReadFile(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write("east.pem", pemOf(east))
	cfg := controlplane.Config{Dir: "../../testdata/gateway-https.in", TrustAnchors: anchors, AnchorsPoll: 50 * time.Millisecond}
	cfg.XDSTLS = controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile}
	app := cptest.StartWith(t, cfg)
	// West's CA issuing east's client identity is refused while it is
	// not among east's anchors.
	ask := func(cert cptest.Leaf) error {
		t.Helper()
		conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: serving.Pool, Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = cptest.DeltaFirst(ctx, conn, node("c", "east", "client", ""), resourcev3.ClusterType)
		return err
	}
	const eastClient = "spiffe://eastwest.io/clusterset/any/cluster/east/role/client"
	if err := ask(east.Client(t, eastClient)); err != nil {
		t.Fatalf("east's own client: %v", err)
	}
	byWest := west.Client(t, eastClient)
	if err := ask(byWest); err == nil {
		t.Fatal("west's certificate served before west's CA is east's anchor")
	}
	// The operator makes west's CA east's anchor too (both in east.pem).
	write("east.pem", append(pemOf(east), pemOf(west)...))
	deadline := time.Now().Add(10 * time.Second)
	for ask(byWest) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the new anchors were not used within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
