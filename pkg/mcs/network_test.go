package mcs

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

func property(name, value string) *about.ClusterProperty {
	return &about.ClusterProperty{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: about.ClusterPropertySpec{Value: value}}
}

// gatewaySvc is an east-west gateway Service with the given ports,
// load balancer ingress (IPs or host names) and externalIPs.
func gatewaySvc(name string, ports []corev1.ServicePort, ingress []corev1.LoadBalancerIngress, external ...string) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "eastwest-system", Name: name, Labels: map[string]string{LabelGateway: "true"}}}
	svc.Spec.Ports, svc.Spec.ExternalIPs, svc.Status.LoadBalancer.Ingress = ports, external, ingress
	return svc
}

// A member's network comes from its network.eastwest.io property; its
// gateway addresses from its labelled Service: load balancer IPs and host
// names (kept as names: Envoy resolves them), else externalIPs, on the
// port named tunnel, else 15443. When the ClusterSet spans networks, a
// member without a usable address is reported, saying why.
func TestNetworksAndGatewayAddresses(t *testing.T) {
	tunnel := []corev1.ServicePort{{Name: "status", Port: 15021}, {Name: TunnelPortName, Port: 443}}
	plain := []corev1.ServicePort{{Name: "tls", Port: DefaultTunnelPort}}
	for _, tc := range []struct {
		name     string
		aNetwork string          // member a has a gateway; its network ("west" unless "-": the default)
		b        []metav1.Object // member b's objects
		network  string
		gateways []GatewayAddress
		errorHas string // "" for no GatewayError
	}{
		{name: "one network: nothing to report", aNetwork: "-"},
		{
			name:    "load balancer IP and host name, the port named tunnel",
			b:       []metav1.Object{property(about.PropertyNetwork, "east"), gatewaySvc("ew", tunnel, []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}, {Hostname: "ew.example.com"}})},
			network: "east",
			gateways: []GatewayAddress{
				{Address: "203.0.113.7", Port: 443, Service: "eastwest-system/ew"},
				{Address: "ew.example.com", Port: 443, Service: "eastwest-system/ew"},
			},
		},
		{
			name:     "externalIPs when no load balancer, port 15443",
			b:        []metav1.Object{property(about.PropertyNetwork, "east"), gatewaySvc("ew", plain, nil, "198.51.100.1")},
			network:  "east",
			gateways: []GatewayAddress{{Address: "198.51.100.1", Port: DefaultTunnelPort, Service: "eastwest-system/ew"}},
		},
		{
			name:     "another network without a gateway Service",
			b:        []metav1.Object{property(about.PropertyNetwork, "east")},
			network:  "east",
			errorHas: "network east has no east-west gateway address (no Service labelled",
		},
		{
			name:     "a gateway Service without an address yet",
			b:        []metav1.Object{property(about.PropertyNetwork, "east"), gatewaySvc("ew", plain, nil)},
			network:  "east",
			errorHas: "no load balancer address and no externalIPs yet",
		},
		{
			name:     "a gateway Service without a tunnel port",
			b:        []metav1.Object{property(about.PropertyNetwork, "east"), gatewaySvc("ew", []corev1.ServicePort{{Name: "http", Port: 80}}, nil, "198.51.100.1")},
			network:  "east",
			errorHas: `no port named "tunnel" or numbered 15443`,
		},
		{
			name:     "the default network beside another",
			b:        []metav1.Object{},
			network:  "",
			errorHas: "network default has no east-west gateway address",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.upsert("a", gatewaySvc("ew", plain, []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}))
			if tc.aNetwork != "-" {
				w.upsert("a", property(about.PropertyNetwork, "west"))
			}
			w.s.member("b")
			w.upsert("b", tc.b...)
			w.flush()
			infos := w.s.State().Clusters
			var a, b ClusterInfo
			for _, c := range infos {
				switch c.Member {
				case "a":
					a = c
				case "b":
					b = c
				}
			}
			if b.Network != tc.network {
				t.Errorf("network %q, want %q", b.Network, tc.network)
			}
			if tc.gateways != nil && !slices.Equal(b.Gateways, tc.gateways) {
				t.Errorf("gateways %+v, want %+v", b.Gateways, tc.gateways)
			}
			if (tc.errorHas == "") != (b.GatewayError == "") || !strings.Contains(b.GatewayError, tc.errorHas) {
				t.Errorf("gateway error %q, want one with %q", b.GatewayError, tc.errorHas)
			}
			if a.GatewayError != "" {
				t.Errorf("member a, which has a gateway, reported: %s", a.GatewayError)
			}
		})
	}
}

// A gateway Service's address change, its label removed or the network
// property changed are ClusterSet changes (Flush reports Clusters); an
// unrelated Service is not.
func TestGatewayChangesAreClusterChanges(t *testing.T) {
	w := newWorld(t)
	svc := gatewaySvc("ew", []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}}, []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}})
	w.upsert("a", svc)
	w.flush()
	for _, tc := range []struct {
		name     string
		apply    func()
		clusters bool
	}{
		{"a new load balancer address", func() {
			svc = svc.DeepCopy()
			svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.2"}}
			w.upsert("a", svc)
		}, true},
		{"the same Service again", func() { w.upsert("a", svc.DeepCopy()) }, false},
		{"an unrelated Service", func() { w.upsert("a", service("shop", "cart", port("http", 80))) }, false},
		{"the label removed", func() {
			svc = svc.DeepCopy()
			svc.Labels = nil
			w.upsert("a", svc)
		}, true},
		{"the network property set", func() { w.upsert("a", property(about.PropertyNetwork, "west")) }, true},
		{"the label back", func() {
			svc = svc.DeepCopy()
			svc.Labels = map[string]string{LabelGateway: "true"}
			w.upsert("a", svc)
		}, true},
		{"another tunnel Secret named", func() {
			svc = svc.DeepCopy()
			svc.Annotations = map[string]string{AnnotationTunnelSecret: "ew-certs"}
			w.upsert("a", svc)
		}, true},
	} {
		tc.apply()
		if got := w.flush().Clusters; got != tc.clusters {
			t.Errorf("%s: Clusters changed %v, want %v", tc.name, got, tc.clusters)
		}
	}
	if got := w.s.State().Clusters[0].TunnelSecret; got != "eastwest-system/ew-certs" {
		t.Errorf("tunnel Secret %q, want the annotated eastwest-system/ew-certs", got)
	}
}

// The tunnel Secret is the gateway Service's annotated one, else
// eastwest-tunnel beside the Service.
func TestTunnelSecretName(t *testing.T) {
	w := newWorld(t)
	w.upsert("a", gatewaySvc("ew", []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}}, nil, "192.0.2.1"))
	w.flush()
	if got := w.s.State().Clusters[0].TunnelSecret; got != "eastwest-system/"+DefaultTunnelSecret {
		t.Errorf("tunnel Secret %q, want eastwest-system/%s", got, DefaultTunnelSecret)
	}
}

// A member's network comes from its property, else from the Networks
// option (the --member-network flag); the property wins.
func TestNetworkFromOption(t *testing.T) {
	w := &world{t: t, s: NewStore(Options{Networks: map[string]string{"a": "flag-a", "b": "flag-b"}})}
	w.upsert("a", namespace("x"))
	w.upsert("b", property(about.PropertyNetwork, "prop-b"))
	w.flush()
	got := map[string]string{}
	for _, c := range w.s.State().Clusters {
		got[c.Member] = c.Network
	}
	if got["a"] != "flag-a" || got["b"] != "prop-b" {
		t.Errorf("networks %v, want a from the option and b from its property", got)
	}
}

// The Reachable condition of a member's exports: none in one network;
// True with its gateway addresses, False with the reason without.
func TestReachableCondition(t *testing.T) {
	gw := []GatewayAddress{{Address: "192.0.2.1", Port: 15443}}
	for _, tc := range []struct {
		name   string
		infos  []ClusterInfo
		status metav1.ConditionStatus // "" for no condition
	}{
		{"one network", []ClusterInfo{{ID: "a"}, {ID: "b"}}, ""},
		{"reachable", []ClusterInfo{{ID: "a", Gateways: gw}, {ID: "b", Network: "n2"}}, metav1.ConditionTrue},
		{"no gateway", []ClusterInfo{{ID: "a", GatewayError: "network default has no east-west gateway address"}, {ID: "b", Network: "n2"}}, metav1.ConditionFalse},
		{"a member left out does not make a network", []ClusterInfo{{ID: "a"}, {Member: "x", Network: "n2"}}, ""},
	} {
		c := ReachableCondition(tc.infos, "a", 3)
		switch {
		case tc.status == "" && c != nil:
			t.Errorf("%s: got %+v, want none", tc.name, c)
		case tc.status != "" && (c == nil || c.Status != tc.status || c.ObservedGeneration != 3 || c.Type != ConditionReachable):
			t.Errorf("%s: got %+v, want %s", tc.name, c, tc.status)
		}
	}
}

// Finding 1 of the trust-boundaries issue: only the operator declares a
// member's east-west gateways. A Service labelled as a gateway in any
// namespace but the member's gateway namespace (a namespace user's, one
// that sorts before eastwest-system included) supplies no address, tunnel
// Secret, local gateway or gateway pod, and is reported; the per-member
// override moves the gateway namespace for that member alone.
func TestGatewaysOnlyFromTheGatewayNamespace(t *testing.T) {
	ports := []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}, {Name: GatewayHTTPPortName, Port: 15080}}
	tenant := func(ns string) *corev1.Service {
		svc := gatewaySvc("evil", ports, []corev1.LoadBalancerIngress{{IP: "198.51.100.66"}})
		svc.Namespace = ns
		svc.Spec.ClusterIP = "10.96.0.66"
		return svc
	}
	operator := gatewaySvc("ew", ports, []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}})
	operator.Spec.ClusterIP = "10.96.0.10"
	for _, tc := range []struct {
		name        string
		opts        Options
		objs        []metav1.Object
		wantGateway []GatewayAddress
		wantSecret  string
		wantLocal   string
		wantPods    []string
		wantIgnored []string
	}{
		{
			name:        "a tenant's labelled Service alone: no gateway, reported",
			objs:        []metav1.Object{tenant("aaa"), slice("aaa", "evil-1", "evil", 1)},
			wantIgnored: []string{"aaa/evil"},
		},
		{
			name:        "beside the operator's: the operator's only, whatever sorts first",
			objs:        []metav1.Object{tenant("aaa"), slice("aaa", "evil-1", "evil", 1), operator, slice("eastwest-system", "ew-1", "ew", 1)},
			wantGateway: []GatewayAddress{{Address: "192.0.2.1", Port: 15443, Service: "eastwest-system/ew"}},
			wantSecret:  "eastwest-system/" + DefaultTunnelSecret,
			wantLocal:   "10.96.0.10",
			wantPods:    []string{"10.4.0.1"}, // ew-1's, not evil-1's (10.6.0.1)
			wantIgnored: []string{"aaa/evil"},
		},
		{
			name:        "the gateway namespace set per member",
			opts:        Options{GatewayNamespace: "gw", GatewayNamespaces: map[string]string{"a": "aaa"}},
			objs:        []metav1.Object{tenant("aaa"), operator},
			wantGateway: []GatewayAddress{{Address: "198.51.100.66", Port: 15443, Service: "aaa/evil"}},
			wantSecret:  "aaa/" + DefaultTunnelSecret,
			wantLocal:   "10.96.0.66",
			wantIgnored: []string{"eastwest-system/ew"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &world{t: t, s: NewStore(tc.opts)}
			w.upsert("a", tc.objs...)
			w.flush()
			c := w.s.State().Clusters[0]
			local := ""
			if c.LocalGateway != nil {
				local = c.LocalGateway.Address
			}
			if !slices.Equal(c.Gateways, tc.wantGateway) || c.TunnelSecret != tc.wantSecret || local != tc.wantLocal ||
				!slices.Equal(c.GatewayPods, tc.wantPods) || !slices.Equal(c.IgnoredGateways, tc.wantIgnored) {
				t.Errorf("got gateways %v secret %q local %q pods %v ignored %v\nwant %v %q %q %v %v",
					c.Gateways, c.TunnelSecret, local, c.GatewayPods, c.IgnoredGateways, tc.wantGateway, tc.wantSecret, tc.wantLocal, tc.wantPods, tc.wantIgnored)
			}
		})
	}
	// The label taken off the tenant's Service clears the report.
	w := newWorld(t)
	svc := tenant("aaa")
	w.upsert("a", svc)
	w.flush()
	svc = svc.DeepCopy()
	svc.Labels = nil
	w.upsert("a", svc)
	if !w.flush().Clusters || len(w.s.State().Clusters[0].IgnoredGateways) != 0 {
		t.Errorf("unlabelling the tenant's Service: ignored %v, want none (and a cluster change)", w.s.State().Clusters[0].IgnoredGateways)
	}
}

// Finding 6 of the trust-boundaries issue: one gateway Service with 2,000
// externalIPs turned east's gateway EDS from 401 into 800,402 endpoints,
// and 5,000 load balancer host names became one DNS cluster. A member
// has at most MaxGatewayAddresses addresses, MaxGatewayHostNames of them
// host names, over all its gateway Services; the rest is left out and
// reported.
func TestGatewayAddressesBounded(t *testing.T) {
	ports := []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}}
	var ips []string
	for i := range 2000 {
		ips = append(ips, fmt.Sprintf("198.51.%d.%d", i/250, i%250+1))
	}
	var names []corev1.LoadBalancerIngress
	for i := range 50 {
		names = append(names, corev1.LoadBalancerIngress{Hostname: fmt.Sprintf("gw%d.example.com", i)})
	}
	for _, tc := range []struct {
		name             string
		objs             []metav1.Object
		wantIPs, wantDNS int
	}{
		{"2,000 externalIPs", []metav1.Object{gatewaySvc("ew", ports, nil, ips...)}, MaxGatewayAddresses, 0},
		{"50 host names", []metav1.Object{gatewaySvc("ew", ports, names)}, 0, MaxGatewayHostNames},
		{"over two Services", []metav1.Object{gatewaySvc("ew1", ports, nil, ips[:10]...), gatewaySvc("ew2", ports, nil, ips[10:20]...)}, MaxGatewayAddresses, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.upsert("a", tc.objs...)
			w.flush()
			c := w.s.State().Clusters[0]
			nIPs, nDNS := 0, 0
			for _, g := range c.Gateways {
				if strings.HasSuffix(g.Address, ".com") {
					nDNS++
				} else {
					nIPs++
				}
			}
			if nIPs != tc.wantIPs || nDNS != tc.wantDNS || len(c.GatewayWarnings) == 0 || !strings.Contains(strings.Join(c.GatewayWarnings, ";"), "left out") {
				t.Errorf("%d IPs and %d host names, warnings %q; want %d, %d and the rest reported left out", nIPs, nDNS, c.GatewayWarnings, tc.wantIPs, tc.wantDNS)
			}
		})
	}
}

// Finding 8 of the trust-boundaries issue: an EndpointSlice whose
// endpoint is the member's own east-west gateway (a gateway pod, its
// cluster IP, or a gateway address of any member) made the gateway send
// traffic to itself (one request held 1,026 nested ones). Such endpoints
// are left out of every service and reported on its backend; the others
// stay.
func TestGatewayEndpointsAreNotServiceEndpoints(t *testing.T) {
	w := newWorld(t)
	gw := gatewaySvc("ew", []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}, {Name: GatewayHTTPPortName, Port: 15080}}, []corev1.LoadBalancerIngress{{IP: "203.0.113.9"}})
	gw.Spec.ClusterIP = "10.96.0.10"
	gwPods := slice("eastwest-system", "ew-1", "ew", 1) // 10.4.0.1
	bGW := gatewaySvc("ew", []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}}, []corev1.LoadBalancerIngress{{IP: "198.51.100.7"}})
	web := slice("ns", "web-1", "web", 1, "http")
	for _, a := range []string{"10.4.0.1", "10.96.0.10", "198.51.100.7", "203.0.113.9"} {
		web.Endpoints = append(web.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	w.exported("a", service("ns", "web", port("http", 80)), 0)
	w.upsert("a", gw, gwPods, web)
	w.upsert("b", bGW)
	w.flush()
	st := w.svcState("ns", "web")
	if st == nil || len(st.Backends) != 1 {
		t.Fatalf("web: %+v", st)
	}
	var kept []string
	for _, s := range st.Backends[0].Slices {
		for e := range s.All() {
			kept = append(kept, e.Addresses...)
		}
	}
	if want := []string{"10.5.0.1"}; !slices.Equal(kept, want) {
		t.Errorf("web's endpoints %v, want %v (its pod, not the gateways)", kept, want)
	}
	if want := []string{"10.4.0.1", "10.96.0.10", "198.51.100.7", "203.0.113.9"}; !slices.Equal(st.Backends[0].Loops, want) {
		t.Errorf("reported loops %v, want %v", st.Backends[0].Loops, want)
	}
	// The same address in another member, on another network, is a pod
	// of that member: pod IPs may repeat there.
	w.exported("b", service("ns", "web", port("http", 80)), 0)
	w.upsert("b", slice("ns", "web-b", "web", 1, "http")) // 10.5.0.1 as well
	w.flush()
	for _, b := range w.svcState("ns", "web").Backends {
		if b.Cluster == "b" && len(b.Loops) != 0 {
			t.Errorf("b's pod reported as a loop: %v", b.Loops)
		}
	}
}
