package mcs

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

func relayState(name string, ports ...int32) *ServiceState {
	s := &ServiceState{Key: ServiceKey{"ns", name}, Import: &Import{}}
	for _, p := range ports {
		s.Import.Ports = append(s.Import.Ports, ImportPort{ServicePort: mcsv1b1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP}})
	}
	return s
}

// Every TCP import port gets a relay port in range, distinct from every
// other port's, kept while the port is imported and freed when it goes;
// a Service gets at most MaxRelayPortsPerService of them (one with 10,000
// TCP ports took the whole range: finding 6 of the trust-boundaries
// issue), and the ports left without one say why.
func TestRelayPorts(t *testing.T) {
	r := newRelays()
	a := relayState("a", 80, 443)
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
	again := relayState("a", 80)
	r.update(again.Key, a, again)
	if again.Import.Ports[0].RelayPort != a80 {
		t.Errorf("port 80 of a moved from %d to %d", a80, again.Import.Ports[0].RelayPort)
	}
	if _, ok := r.slots[a443]; ok {
		t.Errorf("the relay port of a's removed port 443 is still taken")
	}
	r.update(again.Key, again, nil)
	if len(r.slots) != 0 || len(r.byPort) != 0 {
		t.Errorf("a's relay ports not freed with it (%d allocated)", len(r.byPort))
	}
	var many []int32
	for p := range int32(100) {
		many = append(many, 1000+p)
	}
	big := relayState("big", many...)
	r.update(big.Key, nil, big)
	got, refused := 0, 0
	for _, p := range big.Import.Ports {
		switch {
		case p.RelayPort != 0 && p.Port < 1000+MaxRelayPortsPerService:
			got++
		case p.RelayPort == 0 && strings.Contains(p.RelayError, "at most"):
			refused++
		}
	}
	if got != MaxRelayPortsPerService || refused != 100-MaxRelayPortsPerService || len(r.byPort) != MaxRelayPortsPerService {
		t.Errorf("a Service of 100 TCP ports: %d relay ports on its lowest ports, %d refused with the reason (%d allocated); want %d and %d",
			got, refused, len(r.byPort), MaxRelayPortsPerService, 100-MaxRelayPortsPerService)
	}
}

// Finding 3 of the trust-boundaries issue: relay ports were allocated in
// arrival order (Go map order within a batch), so two replicas, and
// every restart, numbered colliding ports differently (2-5 of 200 ports
// between two live replicas), and the leader's relay slices sent one
// service's connections to another's listener on a gateway following
// the other replica. Now the allocation is a function of the set of
// ports: any order of inserts and deletes that ends with one set gives
// the same relay ports as that set inserted from scratch. 3,000 services
// make hundreds of collisions in the 10,000 slots.
func TestRelayPortsIndependentOfOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 3000
	ports := func(i int) []int32 { return []int32{80, 443, int32(8000 + i%7)} }
	fromScratch := func(keep func(int) bool) map[relayKey]int32 {
		r := newRelays()
		for i := range n {
			if keep(i) {
				s := relayState(fmt.Sprintf("s%04d", i), ports(i)...)
				r.update(s.Key, nil, s)
			}
		}
		return r.byPort
	}
	for round := range 3 {
		r := newRelays()
		live := map[int]*ServiceState{}
		// Add everything in a random order, then delete a random third
		// and add back half of those, in random orders.
		for _, i := range rng.Perm(n) {
			s := relayState(fmt.Sprintf("s%04d", i), ports(i)...)
			r.update(s.Key, nil, s)
			live[i] = s
		}
		for _, i := range rng.Perm(n)[:n/3] {
			r.update(live[i].Key, live[i], nil)
			delete(live, i)
		}
		for i := range n {
			if _, ok := live[i]; !ok && rng.IntN(2) == 0 {
				s := relayState(fmt.Sprintf("s%04d", i), ports(i)...)
				r.update(s.Key, nil, s)
				live[i] = s
			}
		}
		want := fromScratch(func(i int) bool { return live[i] != nil })
		if !maps.Equal(r.byPort, want) {
			diff := 0
			for k, v := range want {
				if r.byPort[k] != v {
					diff++
				}
			}
			t.Fatalf("round %d: %d of %d relay ports differ from the same set allocated from scratch", round, diff, len(want))
		}
		for k, v := range r.byPort {
			if r.slots[v] != k {
				t.Fatalf("round %d: slot %d holds %v, not %v", round, v, r.slots[v], k)
			}
		}
	}
}

// The Store gives the services whose relay ports a newcomer moved their
// new ports in the same Flush, so every state it hands out agrees with
// the allocation.
func TestRelayPortsInStatesFollowMoves(t *testing.T) {
	w := newWorld(t)
	for i := range 1500 {
		name := fmt.Sprintf("s%04d", i)
		w.exported("a", service("ns", name, port("tcp", 80)), 0)
		if i%100 == 99 {
			w.flush()
		}
	}
	w.flush()
	seen := map[int32]string{}
	for k, st := range w.s.State().Services.All() {
		n := st.Import.Ports[0].RelayPort
		if other, dup := seen[n]; dup || n == 0 {
			t.Fatalf("%s has relay port %d, also %q's", k, n, other)
		}
		seen[n] = k.String()
		if w.s.relays.byPort[relayKey{k, 80}] != n {
			t.Fatalf("%s's state says relay port %d, the allocation %d", k, n, w.s.relays.byPort[relayKey{k, 80}])
		}
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
	clusters := w.s.State().Clusters
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

// The services one member serves take at most MaxRelayPortsPerMember
// relay ports: over it, the member's greatest ports (by namespace, name
// and port) go without and say why, whatever order the services came
// in, and others' ports keep theirs. When the member drops back under
// the limit, the ports that went without get theirs.
func TestRelayPortsPerMember(t *testing.T) {
	served := func(name string, by ...ClusterID) *ServiceState {
		s := relayState(name, 80)
		s.Import.Ports[0].Clusters = by
		return s
	}
	const n = MaxRelayPortsPerMember + 50
	build := func(order []int) (*relays, map[string]*ServiceState) {
		r := newRelays()
		live := map[string]*ServiceState{}
		for _, i := range order {
			s := served(fmt.Sprintf("a%05d", i), "a")
			// The Store merges again the services whose ports moved.
			again := r.update(s.Key, nil, s)
			live[s.Key.Name] = s
			for len(again) > 0 {
				k := again[0]
				again = again[1:]
				fresh := served(k.Name, "a")
				again = append(again, r.update(k, live[k.Name], fresh)...)
				live[k.Name] = fresh
			}
		}
		return r, live
	}
	sorted := make([]int, n)
	for i := range sorted {
		sorted[i] = i
	}
	want, live := build(sorted)
	got, gotLive := build(rand.New(rand.NewPCG(3, 4)).Perm(n))
	if !maps.Equal(got.byPort, want.byPort) {
		t.Fatal("the member's relay ports depend on the order its services came in")
	}
	with, without := 0, 0
	for name, s := range gotLive {
		p := s.Import.Ports[0]
		switch {
		case p.RelayPort != 0:
			with++
			if name >= fmt.Sprintf("a%05d", MaxRelayPortsPerMember) {
				t.Errorf("%s, above the limit, has relay port %d", name, p.RelayPort)
			}
		case strings.Contains(p.RelayError, "member a"):
			without++
		}
	}
	if with != MaxRelayPortsPerMember || without != n-MaxRelayPortsPerMember {
		t.Errorf("%d ports with relay ports and %d without saying why; want %d and %d", with, without, MaxRelayPortsPerMember, n-MaxRelayPortsPerMember)
	}
	// Another member's service keeps its relay port.
	b := served("b", "b")
	want.update(b.Key, nil, b)
	if b.Import.Ports[0].RelayPort == 0 {
		t.Errorf("b's service, under b's limit, has no relay port: %s", b.Import.Ports[0].RelayError)
	}
	// a's first services go: those that went without get relay ports.
	again := []ServiceKey{}
	for i := range 50 {
		k := ServiceKey{"ns", fmt.Sprintf("a%05d", i)}
		again = append(again, want.update(k, live[k.Name], nil)...)
	}
	if len(again) == 0 {
		t.Fatal("no service was given to merge again when the member dropped under its limit")
	}
	for _, k := range again {
		fresh := served(k.Name, "a")
		want.update(k, live[k.Name], fresh)
		if fresh.Import.Ports[0].RelayPort == 0 {
			t.Errorf("%s, under the limit again, has no relay port: %s", k.Name, fresh.Import.Ports[0].RelayError)
		}
	}
}

// A member's ports crossing its limit are merged again, and only they: a
// member serving 10,000 ports, in random order, has each new port push at
// most one other over the limit, so the merges again number at most the
// ports (they were every port above the limit on every claim, millions,
// and the first merge of such a member did not end).
func TestRelayLimitMovesOnlyThePortsThatCross(t *testing.T) {
	const n = 10_000
	r := newRelays()
	live := map[string]*ServiceState{}
	merges := 0
	for _, i := range rand.New(rand.NewPCG(5, 6)).Perm(n) {
		s := relayState(fmt.Sprintf("a%05d", i), 80)
		s.Import.Ports[0].Clusters = []ClusterID{"a"}
		again := r.update(s.Key, nil, s)
		live[s.Key.Name] = s
		for len(again) > 0 {
			k := again[0]
			again = again[1:]
			merges++
			fresh := relayState(k.Name, 80)
			fresh.Import.Ports[0].Clusters = []ClusterID{"a"}
			again = append(again, r.update(k, live[k.Name], fresh)...)
			live[k.Name] = fresh
		}
	}
	if merges > n {
		t.Errorf("%d services merged again for %d ports, want at most one per port", merges, n)
	}
	if got := r.limit["a"]; got.key.Name != fmt.Sprintf("a%05d", MaxRelayPortsPerMember-1) {
		t.Errorf("limit %v, want the %dth port", got, MaxRelayPortsPerMember)
	}
}

// checkRelays fails when the table's indexes disagree: every placed port
// on its slot, every pinned port that is placed on its pin, no loose port
// on a pinned slot, and loose counting the ports that are not pinned.
func checkRelays(t *testing.T, r *relays) {
	t.Helper()
	loose := 0
	for k, n := range r.byPort {
		if r.slots[n] != k {
			t.Fatalf("slot %d holds %v, not %v", n, r.slots[n], k)
		}
		if p, ok := r.pins[k]; ok {
			if p != n {
				t.Fatalf("%v is pinned to %d but placed on %d", k, p, n)
			}
			continue
		}
		loose++
		if o, ok := r.pinned[n]; ok {
			t.Fatalf("%v holds slot %d, pinned to %v", k, n, o)
		}
	}
	if len(r.slots) != len(r.byPort) || loose != r.loose {
		t.Fatalf("%d slots for %d ports; %d loose, counted %d", len(r.slots), len(r.byPort), loose, r.loose)
	}
}

// The relay ports the write-back leader persisted (the relay ledger) are
// kept while their ports exist: a port imported later whose first choice
// is a pinned port's slot probes past it instead of taking it, as it
// does without the pin (the trust-boundaries issue: with Kubernetes
// members an allocation never changes while its service port exists).
// A pinned slot is kept for its port also while the port is gone (a
// restart, a member still syncing).
func TestPinnedRelayPortsStay(t *testing.T) {
	old := relayKey{ServiceKey{"ns", "zz-old"}, 80}
	// A newcomer that sorts before old and wants old's slot.
	var newcomer relayKey
	for i := 0; ; i++ {
		newcomer = relayKey{ServiceKey{"ns", fmt.Sprintf("a%d", i)}, 80}
		if newcomer.home() == old.home() {
			break
		}
	}
	for _, pinned := range []bool{false, true} {
		r := newRelays()
		r.insert(old)
		was := r.byPort[old]
		if pinned {
			if moved := r.setPins(map[relayKey]int32{old: was}); len(moved) != 0 {
				t.Fatalf("pinning a port where it is moved %v", moved)
			}
		}
		moved := r.insert(newcomer)
		checkRelays(t, r)
		if stayed := r.byPort[old] == was && len(moved) == 0; stayed != pinned {
			t.Errorf("pinned %v: the older port stayed on %d: %v (now %d, moved %v)", pinned, was, stayed, r.byPort[old], moved)
		}
		if pinned {
			// Gone and back: its slot waited for it.
			r.remove(old)
			other := relayKey{ServiceKey{"ns", "b"}, 80}
			for i := 0; other.home() != old.home(); i++ {
				other = relayKey{ServiceKey{"ns", fmt.Sprintf("b%d", i)}, 80}
			}
			r.insert(other)
			r.insert(old)
			checkRelays(t, r)
			if r.byPort[old] != was || r.byPort[other] == was {
				t.Errorf("a pinned port gone and back is on %d (another on %d), want %d", r.byPort[old], r.byPort[other], was)
			}
		}
	}
	// A pin out of the range, or a second pin of one slot, is dropped.
	r := newRelays()
	a, b := relayKey{ServiceKey{"ns", "a"}, 80}, relayKey{ServiceKey{"ns", "b"}, 80}
	r.setPins(map[relayKey]int32{a: 20001, b: 20001, {ServiceKey{"ns", "c"}, 80}: 80})
	if len(r.pins) != 1 || r.pins[a] != 20001 {
		t.Errorf("pins kept %v, want a's alone", r.pins)
	}
}

// With pins, the allocation is still a function of its inputs (the set of
// ports and the pins), whatever the order of inserts, deletes and pin
// changes: every replica given the same ledger and the same ports agrees
// on every relay port.
func TestRelayPortsWithPinsIndependentOfOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 3000
	key := func(i int) relayKey { return relayKey{ServiceKey{"ns", fmt.Sprintf("s%04d", i)}, 80} }
	for round := range 3 {
		r := newRelays()
		live := map[int]bool{}
		pins := map[relayKey]int32{}
		for step := range 6 {
			for _, i := range rng.Perm(n)[:n/2] {
				if live[i] {
					r.remove(key(i))
				} else {
					r.insert(key(i))
				}
				live[i] = !live[i]
			}
			checkRelays(t, r)
			// The ledger catches up with some of the allocation, forgets
			// some of it, and (rarely) says something else.
			next := map[relayKey]int32{}
			for k, p := range pins {
				if rng.IntN(4) != 0 {
					next[k] = p
				}
			}
			for k, p := range r.byPort {
				if rng.IntN(2) == 0 {
					next[k] = p
				}
			}
			for range 20 {
				next[key(rng.IntN(n))] = RelayPortMin + rng.Int32N(relaySlots)
			}
			r.setPins(next)
			pins = next
			checkRelays(t, r)

			scratch := newRelays()
			scratch.setPins(pins)
			for i := range n {
				if live[i] {
					scratch.insert(key(i))
				}
			}
			if !maps.Equal(r.byPort, scratch.byPort) {
				diff := 0
				for k, v := range scratch.byPort {
					if r.byPort[k] != v {
						diff++
					}
				}
				t.Fatalf("round %d, step %d: %d of %d relay ports differ from the same ports and pins from scratch", round, step, diff, len(scratch.byPort))
			}
		}
	}
}

// A ledger read after the ports were placed (a restarted replica, a pin
// the leader wrote elsewhere) moves them to their pins, and the Store
// merges the services it moved again at the next Flush: every state it
// hands out agrees with the allocation.
func TestStoreFollowsRelayPins(t *testing.T) {
	w := newWorld(t)
	w.exported("a", service("ns", "web", port("tcp", 80)), 0)
	w.exported("a", service("ns", "api", port("tcp", 80)), 0)
	w.flush()
	web, api := ServiceKey{"ns", "web"}, ServiceKey{"ns", "api"}
	was := w.svcState("ns", "web").Import.Ports[0].RelayPort
	// web is pinned to api's relay port, api where web was.
	apiWas := w.svcState("ns", "api").Import.Ports[0].RelayPort
	w.s.SetRelayPins(RelayPins{web: {80: apiWas}, api: {80: was}})
	w.flush()
	if got := w.svcState("ns", "web").Import.Ports[0].RelayPort; got != apiWas {
		t.Errorf("web's relay port is %d, want its pin %d", got, apiWas)
	}
	if got := w.svcState("ns", "api").Import.Ports[0].RelayPort; got != was {
		t.Errorf("api's relay port is %d, want its pin %d", got, was)
	}
	checkRelays(t, w.s.relays)
}
