package envoy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/envoystats"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/envoytest"
	"github.com/eastwest-dev/eastwest/test/netns"
)

// tieredNets is tieredMembers on two networks, in network namespaces:
// na (use1, use2, usw1) and eu (euw1, euw2). Each network's pods share
// one namespace that only that network's gateways reach; the gateways
// reach each other over a WAN, through mutual-TLS tunnels. Real Envoys run
// the gateways of use1, euw1 and euw2 (the last two for their tunnel
// listeners).
type tieredNets struct {
	ca      *cptest.CA
	dir     string
	members map[string]*netMember
	pod     map[string]string // member -> its pod's address
	pods    map[string]*envoytest.Backend
	c       *http.Client
}

// export writes member m's export of svc (HTTP port 80 to its pod), ready
// or not, with annotations as name, value pairs.
func (n *tieredNets) export(t testing.TB, m, svc string, ready bool, annotations ...string) {
	t.Helper()
	ip := n.pod[m]
	if !ready {
		ip += "!"
	}
	doc := fixture.ServiceYAML("shop", svc, []string{"http:80:8080:http"}, ip)
	if len(annotations) > 0 {
		doc = fixture.Annotate(doc, annotations...)
	}
	writeFile(t, filepath.Join(n.dir, m, svc+".yaml"), doc)
}

// spread sends count requests for svc to member at's gateway and counts
// the answering members (the status for anything but a 200).
func (n *tieredNets) spread(t testing.TB, at, svc string, count int) map[string]int {
	t.Helper()
	out := map[string]int{}
	url := fmt.Sprintf("http://%s:%d/", n.members[at].gw.NSIP, translate.DefaultGatewayPort)
	for range count {
		resp, body, err := envoytest.Send(n.c, http.MethodGet, url, svc+".shop.svc.clusterset.local", nil)
		if err != nil {
			t.Fatalf("GET %s at %s: %v", svc, at, err)
		}
		who := fmt.Sprint(resp.StatusCode)
		if resp.StatusCode == http.StatusOK {
			who, _, _ = strings.Cut(body, "/")
		}
		out[who]++
	}
	return out
}

func startTieredNets(t testing.TB) *tieredNets {
	t.Helper()
	ca := cptest.NewCA(t)
	caBytes, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	n := &tieredNets{ca: ca, dir: t.TempDir(), members: map[string]*netMember{}, pod: map[string]string{}, pods: map[string]*envoytest.Backend{}, c: envoytest.HTTPClient(false)}
	wan := netns.NewWAN(t)
	podNS := map[string]*netns.NS{"na": netns.New(t), "eu": netns.New(t)}
	network := func(jurisdiction string) string {
		if jurisdiction == "EU" {
			return "eu"
		}
		return "na"
	}
	for i, tm := range tieredMembers {
		m := &netMember{name: tm.name, dir: filepath.Join(n.dir, tm.name)}
		n.members[tm.name] = m
		net := network(tm.jurisdiction)
		m.gw, m.pods = netns.New(t), podNS[net]
		m.gw.Link(t, m.pods, "10.0.0.0/16")
		m.wan = wan.Join(t, m.gw)
		n.pod[tm.name] = fmt.Sprintf("10.0.%d.1", i+1)
		m.pods.AddAddr(t, n.pod[tm.name])
		n.pods[tm.name] = envoytest.StartBackendWith(t, m.pods.Listen, tm.name+"/pod", n.pod[tm.name], 8080, 0, -1)
		writeFile(t, filepath.Join(m.dir, "cluster.yaml"), fixture.ClusterYAML(tm.name, about.PropertyNetwork+"="+net,
			about.PropertyRegion+"="+tm.region, about.PropertyJurisdiction+"="+tm.jurisdiction)+fmt.Sprintf(`---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: eastwest-gateway, namespace: eastwest-system, labels: {eastwest.io/east-west-gateway: "true"}}
spec: {clusterIP: %[2]s, ports: [{name: tunnel, port: 15443}, {name: http, port: 15080}], externalIPs: [%[1]s]}
`, m.wan, m.gw.NSIP))
		m.tunnelSecret(t, ca.Gateway(t, gatewayID(tm.name)), string(caBytes))
	}
	return n
}

// dialTunnel opens member to's tunnel from member from's gateway
// namespace with from's gateway certificate, for sni, and sends one
// request: the member whose pod answered, or the error (a closed
// connection when the tunnel refuses the peer).
func (n *tieredNets) dialTunnel(from, to, sni string) (string, error) {
	conn, err := n.members[from].gw.Dial(net.JoinHostPort(n.members[to].wan, "15443"), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	cert := n.members[from].leaf.TLS
	tc := tls.Client(conn, &tls.Config{ServerName: sni, RootCAs: n.ca.Pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		// The gateway's certificate names its identity, not the SNI.
		InsecureSkipVerify: true, //nolint:gosec // the peer is checked below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) == 0 || cs.PeerCertificates[0].URIs[0].String() != gatewayID(to) {
				return fmt.Errorf("%s's tunnel presented %v", to, cs.PeerCertificates)
			}
			return nil
		}})
	if _, err := fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	member, _, _ := strings.Cut(string(body), "/")
	return member, nil
}

// serve starts the control plane (on use1's gateway namespace's veth,
// mutual TLS) and the Envoys of use1, euw1 and euw2.
func (n *tieredNets) serve(t testing.TB) *controlplane.App {
	t.Helper()
	ca := n.ca
	use1 := n.members["use1"]
	srv := ca.ServerAt(t, use1.gw.HostIP)
	cfg := controlplane.Config{Dir: n.dir, XDSAddress: use1.gw.HostIP + ":0"}
	cfg.XDSTLS = controlplane.TLSFiles{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.File}
	app := cptest.StartWith(t, cfg)
	for _, name := range []string{"use1", "euw1", "euw2"} {
		m := n.members[name]
		if m != use1 {
			m.gw.Route(t, use1.gw.HostIP+"/32", m.gw.HostIP)
		}
		v := translate.View{Cluster: mcs.ClusterID(name), Role: translate.RoleGateway}
		m.envoy = envoytest.ForViewIn(t, m.gw, app, v, "gw-"+name, true,
			&envoytest.TLS{CertFile: m.leaf.CertFile, KeyFile: m.leaf.KeyFile, CAFile: ca.File, ServerName: "localhost"})
		m.envoy.WaitSynced(t, app, "gw-"+name, v.String())
	}
	return app
}

// The setting with real Envoys in network namespaces: five
// members over three regions and two networks. Tiers cross networks:
// use1's gateway (na) prefers the eu-west members, reached through their
// gateways' tunnels, and falls back to usw1 on its own network only when
// neither has a ready endpoint; a strict EU-only service answers use1
// with 503 while euw2 (EU) is served; weights split 90/10 between a
// member on the gateway's network and one behind a tunnel.
func TestTrafficTiersAcrossNetworks(t *testing.T) {
	n := startTieredNets(t)
	euFirst := `[{"propertySelector": {"matchProperties": {"region.topology.k8s.io": "eu-west"}}}, ` + selSameJuris + `]`
	for _, m := range []string{"euw1", "euw2", "usw1"} {
		n.export(t, m, "api", true, mcs.AnnotationClusterSelectors, euFirst)
	}
	n.export(t, "euw1", "records", true, mcs.AnnotationClusterSelectors, "["+selSameJuris+"]", mcs.AnnotationClusterSelectorsStrict, "true")
	n.export(t, "use2", "cart", true, mcs.AnnotationWeight, "90")
	n.export(t, "euw1", "cart", true, mcs.AnnotationWeight, "10")
	// use1 exports a service too: its gateway then has a tunnel listener,
	// which uses every Secret its view is served.
	n.export(t, "use1", "home", true)
	app := n.serve(t)

	got := n.spread(t, "use1", "api", 2000)
	if got["euw1"]+got["euw2"] != 2000 || got["euw1"] < 700 || got["euw2"] < 700 {
		t.Fatalf("2,000 requests at use1: %v, want all through the tunnels to euw1 and euw2 (the first tier), about half each", got)
	}
	for _, m := range []string{"euw1", "euw2"} {
		n.export(t, m, "api", false, mcs.AnnotationClusterSelectors, euFirst)
	}
	testkit.Eventually(t, "use1's api traffic on usw1", func() error {
		if got := n.spread(t, "use1", "api", 20); got["usw1"] != 20 {
			return fmt.Errorf("answers %v", got)
		}
		return nil
	})

	if got := n.spread(t, "use1", "records", 100); got["503"] != 100 {
		t.Errorf("records (strict EU) at use1: %v, want 100 answers of 503", got)
	}
	if got := n.spread(t, "euw2", "records", 100); got["euw1"] != 100 {
		t.Errorf("records at euw2: %v, want all answered by euw1", got)
	}

	// The border holds at the receiving end too: euw1's tunnel admits
	// records' connections from the gateways of members whose strict
	// selection includes euw1 (euw2), and closes use1's, though use1's
	// gateway identity opens its tunnels for every other service.
	sni := translate.TunnelSNI(mcs.ServiceKey{Namespace: "shop", Name: "records"}, 80)
	if got, err := n.dialTunnel("euw2", "euw1", sni); err != nil || got != "euw1" {
		t.Errorf("records through euw1's tunnel from euw2's gateway: %q %v, want euw1's pod", got, err)
	}
	if got, err := n.dialTunnel("use1", "euw1", sni); err == nil {
		t.Errorf("records through euw1's tunnel from use1's gateway (outside the strict selection): answered by %q, want the connection closed", got)
	}
	if got, err := n.dialTunnel("use1", "euw1", translate.TunnelSNI(mcs.ServiceKey{Namespace: "shop", Name: "cart"}, 80)); err != nil || got != "euw1" {
		t.Errorf("cart (not strict) through euw1's tunnel from use1's gateway: %q %v, want euw1's pod", got, err)
	}

	const count = 5000
	seen := map[string]int{"use2": len(n.pods["use2"].Requests()), "euw1": len(n.pods["euw1"].Requests())}
	got = n.spread(t, "use1", "cart", count)
	// use1's gateway counts what it sent to each member, through the
	// tunnel too, as the backends counted it.
	counted := crossCluster(t, n.members["use1"].envoy, envoystats.Completed, "shop/cart/80", "use1")
	for m, before := range seen {
		if s := len(n.pods[m].Requests()) - before; counted[m] != s {
			t.Errorf("use1 -> %s: the gateway counted %d, the backend saw %d", m, counted[m], s)
		}
	}
	share := float64(got["use2"]) / count
	if share < 0.88 || share > 0.92 || got["use2"]+got["euw1"] != count {
		t.Errorf("%d requests with weights 90 (use2, direct) / 10 (euw1, tunnelled): %v, want use2 90%% +-2", count, got)
	}
	t.Logf("across networks: weights 90/10 over %d requests: use2 %.2f%%", count, 100*share)
	for _, name := range []string{"use1", "euw1", "euw2"} {
		n.members[name].envoy.CheckAccepted(t, app, name+"/gateway")
	}
}
