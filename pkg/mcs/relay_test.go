package mcs

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

// Every TCP import port gets a relay port in range, distinct from every
// other port's, kept while the port is imported (even when other services
// come and go) and freed when it goes; two ports whose first choice is
// the same get different ones.
func TestRelayPorts(t *testing.T) {
	r := newRelays()
	st := func(name string, ports ...int32) *ServiceState {
		s := &ServiceState{Key: ServiceKey{"ns", name}, Import: &Import{}}
		for _, p := range ports {
			s.Import.Ports = append(s.Import.Ports, ImportPort{ServicePort: mcsv1b1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP}})
		}
		return s
	}
	a := st("a", 80, 443)
	r.update(a.Key, nil, a)
	a80, a443 := a.Import.Ports[0].RelayPort, a.Import.Ports[1].RelayPort
	for _, n := range []int32{a80, a443} {
		if n < RelayPortMin || n > RelayPortMax {
			t.Fatalf("relay port %d out of range", n)
		}
	}
	if a80 == a443 {
		t.Fatal("two ports share a relay port")
	}
	// Many services: all distinct (collisions probe to the next port).
	seen := map[int32]bool{a80: true, a443: true}
	for i := range 3000 {
		s := st("s"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)), 80)
		r.update(s.Key, nil, s)
		if n := s.Import.Ports[0].RelayPort; seen[n] {
			t.Fatalf("relay port %d given twice", n)
		} else {
			seen[n] = true
		}
	}
	again := st("a", 80)
	r.update(again.Key, a, again)
	if again.Import.Ports[0].RelayPort != a80 {
		t.Errorf("port 80 of a moved from %d to %d", a80, again.Import.Ports[0].RelayPort)
	}
	if r.used[a443] {
		t.Errorf("the relay port of a's removed port 443 is still taken")
	}
	r.update(again.Key, again, nil)
	if r.used[a80] || len(r.byPort) != 3000 {
		t.Errorf("a's relay ports not freed with it (%d allocated)", len(r.byPort))
	}
}

// In a ClusterSet of several networks, a member's MCS EndpointSlices of an
// import list only its own network's endpoints; those of members on other
// networks are replaced by one relay slice of the member's gateway pods on
// the relay ports of the ports those members serve; without gateway pods,
// by nothing.
func TestRelaySlices(t *testing.T) {
	w := newWorld(t)
	gw := gatewaySvc("ew", []corev1.ServicePort{{Name: TunnelPortName, Port: 15443}}, nil, "192.0.2.1")
	gwPods := slice("eastwest-system", "ew-1", "ew", 2, "tunnel")
	for _, m := range []string{"a", "b", "c"} {
		w.exported(m, service("ns", "web", port("http", 80)), 0)
		w.upsert(m, slice("ns", "web-"+m, "web", 1, "http"), gw, property(about.PropertyClusterID, m))
	}
	w.upsert("a", property(about.PropertyNetwork, "one"), gwPods)
	w.upsert("b", property(about.PropertyNetwork, "one"))
	w.upsert("c", property(about.PropertyNetwork, "two"))
	st := w.svcState("ns", "web")
	clusters := w.s.Snapshot().Clusters
	relay := st.Import.Ports[0].RelayPort

	got := EndpointSlicesFor(st, "a", clusters)
	var sources []string
	var rs *discoveryv1.EndpointSlice
	for _, es := range got {
		sources = append(sources, es.Labels["multicluster.kubernetes.io/source-cluster"])
		if es.Labels[LabelRelay] == "true" {
			rs = es
		}
	}
	slices.Sort(sources)
	if !slices.Equal(sources, []string{"a", "a", "b"}) {
		t.Errorf("a's slices come from %v, want a, b (its network) and a's relay slice", sources)
	}
	if rs == nil || len(rs.Endpoints) != 2 || len(rs.Ports) != 1 || *rs.Ports[0].Port != relay || *rs.Ports[0].Name != "http" {
		t.Fatalf("a's relay slice is %+v, want a's 2 gateway pods on relay port %d named http", rs, relay)
	}
	// b has no gateway pods: c's endpoints are left out, nothing replaces them.
	for _, es := range EndpointSlicesFor(st, "b", clusters) {
		if src := es.Labels["multicluster.kubernetes.io/source-cluster"]; src == "c" || es.Labels[LabelRelay] != "" {
			t.Errorf("b holds a slice of %s (relay %q), which b's pods cannot reach", src, es.Labels[LabelRelay])
		}
	}
	// One network: no relay, every member's endpoints.
	if n := len(EndpointSlicesFor(st, "a", nil)); n != 3 {
		t.Errorf("flat: %d slices, want one per member", n)
	}
}
