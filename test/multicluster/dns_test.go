package multicluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/internal/syncbuf"
	"github.com/eastwest-dev/eastwest/internal/testkit"
)

// TestClusterSetDNS runs the real CoreDNS, with the Corefile eastwest
// ships (deploy/coredns/coredns.yaml), against member c of a ClusterSet of
// three real apiservers, and checks that the clusterset.local names of
// KEP-1645 resolve from the ServiceImports and MCS EndpointSlices the
// write-back puts into c, which exports nothing itself.
func TestClusterSetDNS(t *testing.T) {
	cs := startClusterSet(t)
	a, b, c := cs.members[0], cs.members[1], cs.members[2]
	dns := startCoreDNS(t, c)
	// The latencies below are the write-back's and CoreDNS's, not the
	// first election's.
	testkit.Eventually(t, "write-back leader", func() error {
		if metricValue(t, cs.app, "eastwest_writeback_leader") != 1 {
			return errors.New("not leading yet")
		}
		return nil
	})

	t.Run("a ClusterSetIP import answers A and AAAA with its spec.ips, and SRV by port name", func(t *testing.T) {
		ns := "dns1"
		c.namespace(t, ns)
		for _, m := range []*member{a, b} {
			svc := clusterIPService(ns, "web", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
				corev1.ServicePort{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP})
			svc.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
			svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			m.service(t, svc)
		}
		name := "web." + ns + ".svc.clusterset.local."
		start := time.Now()
		a.export(t, ns, "web")
		si := c.importIs(t, ns, "web", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Spec.IPs) != 2 {
				return fmt.Errorf("ips %v, want one per family", si.Spec.IPs)
			}
			return nil
		})
		v4, v6 := netip.MustParseAddr(si.Spec.IPs[0]), netip.MustParseAddr(si.Spec.IPs[1])
		dns.answers(t, "A "+name, dns.resolvesTo("ip4", name, v4))
		t.Logf("first export after start-up in a -> A record answered by c's CoreDNS: %v", time.Since(start).Round(time.Millisecond))
		dns.answers(t, "AAAA "+name, dns.resolvesTo("ip6", name, v6))

		// b's export joins the same import: the name keeps its address.
		b.export(t, ns, "web")
		c.importIs(t, ns, "web", func(si *mcsv1b1.ServiceImport) error {
			if len(si.Status.Clusters) != 2 {
				return fmt.Errorf("status.clusters %v", si.Status.Clusters)
			}
			// mcs-api v0.5.2: the importer's EndpointSlices are written.
			if si.Status.EndpointSliceObjects != mcsv1b1.EndpointSliceObjectsPresent {
				return fmt.Errorf("status.endpointSliceObjects %q, want Present", si.Status.EndpointSliceObjects)
			}
			return nil
		})
		dns.answers(t, "A "+name+" with two exporters", dns.resolvesTo("ip4", name, v4))

		// The bare name, as the MCS conformance suite asks: one record per
		// port, each naming the service.
		dns.answers(t, "SRV "+name, func() error {
			_, srvs, err := dns.resolver.LookupSRV(ctx, "", "", name)
			if err != nil {
				return err
			}
			if got := srvString(srvs); got != "["+name+":80 "+name+":9090]" && got != "["+name+":9090 "+name+":80]" {
				return fmt.Errorf("SRV %s", got)
			}
			return nil
		})
		// cluster.local stays local: c has no Service web of its own.
		if err := notFound(dns.lookup("ip4", "web."+ns+".svc.cluster.local.")()); err != nil {
			t.Errorf("web.%s.svc.cluster.local in c, which has no such Service: %v", ns, err)
		}
		for _, p := range []struct {
			name string
			port uint16
		}{{"http", 80}, {"metrics", 9090}} {
			dns.answers(t, "SRV _"+p.name+"._tcp."+name, func() error {
				_, srvs, err := dns.resolver.LookupSRV(ctx, p.name, "tcp", name)
				if err != nil {
					return err
				}
				if len(srvs) != 1 || srvs[0].Port != p.port || srvs[0].Target != name {
					return fmt.Errorf("SRV %s", srvString(srvs))
				}
				return nil
			})
		}
	})

	t.Run("a headless import answers every ready endpoint in the ClusterSet, and each by its per-cluster hostname", func(t *testing.T) {
		ns := "dns2"
		c.namespace(t, ns)
		pods := map[*member][]hostPod{
			a: {{"db-0", "10.20.1.1", true}, {"db-1", "10.20.1.2", true}, {"db-2", "10.20.1.3", false}},
			b: {{"db-0", "10.20.2.1", true}},
		}
		for m, ps := range pods {
			svc := clusterIPService(ns, "db", corev1.ServicePort{Name: "sql", Port: 5432, Protocol: corev1.ProtocolTCP})
			svc.Spec.ClusterIP = corev1.ClusterIPNone
			m.service(t, svc)
			m.hostSlice(t, ns, "db", ps)
			m.export(t, ns, "db")
		}
		name := "db." + ns + ".svc.clusterset.local."
		want := mustAddrs("10.20.1.1", "10.20.1.2", "10.20.2.1")
		dns.answers(t, "A "+name, dns.resolvesTo("ip4", name, want...))
		for host, ip := range map[string]string{"db-0.a": "10.20.1.1", "db-1.a": "10.20.1.2", "db-0.b": "10.20.2.1"} {
			n := host + "." + name
			dns.answers(t, "A "+n, dns.resolvesTo("ip4", n, netip.MustParseAddr(ip)))
		}
		// A pod that is not ready has no name, in any member.
		dns.answers(t, "db-2.a."+name+" is NXDOMAIN", func() error { return notFound(dns.lookup("ip4", "db-2.a."+name)()) })
		// By port name, and the bare name as the MCS conformance suite
		// asks: one record per ready endpoint, named by its hostname.
		for _, q := range []struct{ service, proto string }{{"sql", "tcp"}, {"", ""}} {
			dns.answers(t, fmt.Sprintf("SRV %q %q %s", q.service, q.proto, name), func() error {
				_, srvs, err := dns.resolver.LookupSRV(ctx, q.service, q.proto, name)
				if err != nil {
					return err
				}
				var targets []string
				for _, s := range srvs {
					if s.Port != 5432 {
						return fmt.Errorf("SRV %s", srvString(srvs))
					}
					targets = append(targets, s.Target)
				}
				slices.Sort(targets)
				if w := []string{"db-0.a." + name, "db-0.b." + name, "db-1.a." + name}; !slices.Equal(targets, w) {
					return fmt.Errorf("SRV targets %v, want %v", targets, w)
				}
				return nil
			})
		}

		// b's pod becomes ready elsewhere: the name follows the endpoints.
		b.hostSlice(t, ns, "db", []hostPod{{"db-0", "10.20.2.1", true}, {"db-1", "10.20.2.2", true}})
		want = mustAddrs("10.20.1.1", "10.20.1.2", "10.20.2.1", "10.20.2.2")
		dns.answers(t, "A "+name+" after b scaled up", dns.resolvesTo("ip4", name, want...))
	})

	t.Run("a service stops resolving once no member exports it, and an unexported one never does", func(t *testing.T) {
		ns := "dns3"
		c.namespace(t, ns)
		a.service(t, clusterIPService(ns, "gone"))
		a.service(t, clusterIPService(ns, "private"))
		name := "gone." + ns + ".svc.clusterset.local."
		start := time.Now()
		a.export(t, ns, "gone")
		dns.answers(t, "A "+name, func() error {
			addrs, err := dns.lookup("ip4", name)()
			if err == nil && len(addrs) != 1 {
				return fmt.Errorf("answers %v", addrs)
			}
			return err
		})
		t.Logf("export created in a -> A record answered by c's CoreDNS: %v", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		a.unexport(t, ns, "gone")
		dns.answers(t, name+" is NXDOMAIN", func() error { return notFound(dns.lookup("ip4", name)()) })
		t.Logf("export deleted in a -> NXDOMAIN from c's CoreDNS: %v", time.Since(start).Round(time.Millisecond))
		private := "private." + ns + ".svc.clusterset.local."
		if err := notFound(dns.lookup("ip4", private)()); err != nil {
			t.Errorf("%s: %v", private, err)
		}
	})
}

// coreDNS is a CoreDNS process serving one member's DNS on loopback.
type coreDNS struct {
	resolver *net.Resolver
}

// lookup returns a function that resolves name in network ("ip4" or
// "ip6") through CoreDNS.
func (d *coreDNS) lookup(network, name string) func() ([]netip.Addr, error) {
	return func() ([]netip.Addr, error) { return d.resolver.LookupNetIP(ctx, network, name) }
}

// answers polls check until it passes, every 10 ms: the names follow the
// apiserver through two watches (eastwest's and CoreDNS's), and the test
// reports how long that took.
func (d *coreDNS) answers(t testing.TB, what string, check func() error) {
	t.Helper()
	testkit.Eventually(t, what, check, testkit.Poll{Every: 10 * time.Millisecond})
}

// corednsBin finds the CoreDNS that `make coredns` builds.
func corednsBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("COREDNS_BIN"); p != "" {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "..", ".cache", "bin", "coredns"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no CoreDNS at %s: run `make coredns` (test/tools/coredns.sh) or set COREDNS_BIN", p)
	}
	return p
}

// startCoreDNS runs CoreDNS with the shipped Corefile against member m's
// apiserver, on loopback ports of its own, until the test ends.
func startCoreDNS(t *testing.T, m *member) *coreDNS {
	t.Helper()
	// CoreDNS's usual ports, on a loopback address of this test's own.
	ip := testkit.Loopback(t, dnsPort, healthPort, readyPort, metricsPort)
	corefile := testCorefile(t, m.Kubeconfig, ip)
	dir := t.TempDir()
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	cmd := exec.Command(corednsBin(t), "-conf", conf)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err := <-exited; err != nil && t.Failed() {
			t.Logf("coredns: %v", err)
		}
		if t.Failed() {
			t.Logf("coredns output:\n%s", out.String())
		}
	})
	// The ready plugin answers 200 once the kubernetes plugin's informers
	// (Services, EndpointSlices, ServiceImports, MCS EndpointSlices) have
	// synced.
	ready := fmt.Sprintf("http://%s:%d/ready", ip, readyPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("coredns exited: %v\n%s", err, out.String())
		default:
		}
		resp, err := http.Get(ready)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("coredns not ready after 30s (%v)\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	addr := fmt.Sprintf("%s:%d", ip, dnsPort)
	return &coreDNS{resolver: &net.Resolver{PreferGo: true, Dial: func(dctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(dctx, network, addr)
	}}}
}

// CoreDNS's ports in the tests: its usual ones, on a loopback address of
// each test's own (testkit.Loopback).
const (
	dnsPort     = 53
	healthPort  = 8080
	readyPort   = 8181
	metricsPort = 9153
)

// testCorefile is the Corefile of deploy/coredns/coredns.yaml, as shipped,
// with what a test on a shared machine must change: one loopback address
// only, the member's kubeconfig (CoreDNS runs outside the cluster), and no
// forwarding to upstream resolvers (tests send traffic to loopback only).
// Each change must apply, so a changed Corefile fails here rather than
// being tested half.
func testCorefile(t testing.TB, kubeconfig, ip string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "deploy", "coredns", "coredns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var corefile string
	dec := k8syaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var cm corev1.ConfigMap
		if err := dec.Decode(&cm); err != nil {
			t.Fatalf("deploy/coredns/coredns.yaml: no ConfigMap with a Corefile (%v)", err)
		}
		if cm.Kind == "ConfigMap" && cm.Data["Corefile"] != "" {
			corefile = cm.Data["Corefile"]
			break
		}
	}
	edits := []struct{ old, new string }{
		{".:53 {", fmt.Sprintf(".:%d {\n    bind %s", dnsPort, ip)},
		{"health {", fmt.Sprintf("health %s:%d {", ip, healthPort)},
		{"\n    ready\n", fmt.Sprintf("\n    ready %s:%d\n", ip, readyPort)},
		{"kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {", "kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {\n       kubeconfig " + kubeconfig},
		{"prometheus :9153", fmt.Sprintf("prometheus %s:%d", ip, metricsPort)},
		{"forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n", ""},
	}
	for _, e := range edits {
		if !strings.Contains(corefile, e.old) {
			t.Fatalf("the shipped Corefile lacks %q:\n%s", e.old, corefile)
		}
		corefile = strings.Replace(corefile, e.old, e.new, 1)
	}
	return corefile
}

// hostPod is one endpoint of a headless service with its hostname, as a
// StatefulSet's pods have.
type hostPod struct {
	hostname, ip string
	ready        bool
}

// hostSlice writes the EndpointSlice of a headless service with hostnames,
// as the EndpointSlice controller does for a StatefulSet.
func (m *member) hostSlice(t testing.TB, ns, svc string, pods []hostPod) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-src", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("sql"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.ip}, Hostname: ptr(p.hostname),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(p.ready)}})
	}
	m.writeSlice(t, es)
}

// resolvesTo checks that name resolves in network ("ip4" or "ip6") to
// exactly want.
func (d *coreDNS) resolvesTo(network, name string, want ...netip.Addr) func() error {
	return func() error {
		have, err := d.lookup(network, name)()
		if err != nil {
			return err
		}
		return sameAddrs(have, want)
	}
}

func sameAddrs(have, want []netip.Addr) error {
	have = slices.Clone(have)
	want = slices.Clone(want)
	slices.SortFunc(have, netip.Addr.Compare)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(have, want) {
		return fmt.Errorf("answers %v, want %v", have, want)
	}
	return nil
}

func notFound(addrs []netip.Addr, err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("answers %v, want NXDOMAIN", addrs)
}

func mustAddrs(ips ...string) []netip.Addr {
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParseAddr(ip)
	}
	return out
}

func srvString(srvs []*net.SRV) string {
	var parts []string
	for _, s := range srvs {
		parts = append(parts, fmt.Sprintf("%s:%d", s.Target, s.Port))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
