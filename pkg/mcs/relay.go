package mcs

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Relay ports. Pods without a proxy reach a ServiceImport through
// kube-proxy and the derived Service's EndpointSlices; the endpoints of a
// member on another network are not routable from them. Instead the
// slices list the importing member's own east-west gateway pods on the
// port's relay port, where the gateway's relay listener sends the
// connection to the port's cluster (the usual priorities: its own member
// first, then the others, through tunnels to other networks).
//
// Every TCP port of every import (up to MaxRelayPortsPerService per
// service, the lowest port numbers first) has a relay port in
// [RelayPortMin, RelayPortMax], the same in every member. The write-back
// leader lists gateway pods on it while any replica's gateways may be
// serving the listener, so every replica, and every restart, must give a
// port the same relay port: the allocation is a function of the set of
// ports alone, never of the order they arrived in. It is an ordered hash
// table with linear probing (Amble and Knuth, 1974): a port's first
// choice comes from a hash of its service and number; on a collision the
// smaller (namespace, name, port) keeps the slot and the other probes on.
// Its layout is unique for a set of ports, whatever the order of
// inserts and deletes. A port imported later that collides may thus move
// one imported earlier (rarely: 10,000 slots), unless the write-back
// leader has recorded the earlier one in the relay ledger
// (writeback/relayledger.go): a pinned port has its slot to itself, as
// if smaller than any other, so the layout is unique for a set of ports
// and pins, and a pinned port never moves while its pin stays.
//
// The range holds 10,000 ports, below Linux's ephemeral ports (32768 on):
// once it is full, ports have none (RelayPort 0, RelayError), and their
// pods without a proxy do not reach other networks.
const (
	RelayPortMin = 20000
	RelayPortMax = 29999
	// MaxRelayPortsPerService bounds what one Service can take of the
	// range: a Service with 10,000 TCP ports would otherwise take it all.
	MaxRelayPortsPerService = 64
	// MaxRelayPortsPerMember bounds what the services one member serves
	// can take of the range (a fifth), so that one member's services
	// leave room for the others'. Over it, the member's greatest ports
	// (by namespace, name and port) go without, whatever order they
	// came in, so that every replica agrees.
	MaxRelayPortsPerMember = 2_000
	// LabelRelay marks the MCS EndpointSlices that list a member's own
	// gateway pods on relay ports.
	LabelRelay = "eastwest.io/relay"

	relaySlots = RelayPortMax - RelayPortMin + 1
)

type relayKey struct {
	key  ServiceKey
	port int32
}

func (k relayKey) compare(o relayKey) int {
	if c := k.key.Compare(o.key); c != 0 {
		return c
	}
	return int(k.port) - int(o.port)
}

// home is a port's first choice, an offset in the range.
func (k relayKey) home() int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(k.key.Namespace + "/" + k.key.Name + ":" + strconv.Itoa(int(k.port))))
	return int32(h.Sum32() % relaySlots) //nolint:gosec // less than relaySlots
}

// RelayFirstChoice is the relay port a service port takes when no other
// port holds it (or is pinned to it).
func RelayFirstChoice(key ServiceKey, port int32) int32 {
	return RelayPortMin + relayKey{key, port}.home()
}

// relays are the relay ports allocated: an ordered hash table, and what
// each member's services claim of it.
type relays struct {
	byPort map[relayKey]int32 // port -> relay port
	slots  map[int32]relayKey // relay port -> port
	// pins are the relay ports persisted by the write-back leader (the
	// relay ledger, SetRelayPins), each slot pinned to at most one port;
	// pinned is their inverse. A pinned slot is its port's alone, whether
	// or not the port exists now: the others probe past it, and it never
	// moves (loose counts the ports placed that are not pinned).
	pins   map[relayKey]int32
	pinned map[int32]relayKey
	loose  int
	// servedBy are the members serving each claimed port; claims the
	// ports each member serves, sorted; limit, for a member over
	// MaxRelayPortsPerMember, its greatest port that has a relay port.
	servedBy map[relayKey][]ClusterID
	claims   map[ClusterID][]relayKey // sorted
	limit    map[ClusterID]relayKey
}

func newRelays() *relays {
	return &relays{byPort: map[relayKey]int32{}, slots: map[int32]relayKey{},
		pins: map[relayKey]int32{}, pinned: map[int32]relayKey{},
		servedBy: map[relayKey][]ClusterID{}, claims: map[ClusterID][]relayKey{}, limit: map[ClusterID]relayKey{}}
}

// claim records the members that serve a service's ports (nil: none),
// and returns the other services whose ports gained or lost their place
// under a member's limit. Each member's claims are kept sorted, so that
// its limit is read, not computed, and only the ports that crossed it
// are returned: a claim costs a binary search and a copy, and a member
// that goes over the limit by one port moves one port (before, every
// claim sorted the member's ports and returned all above the limit, so
// that the first merge of a member serving 10,000 ports did not end).
func (r *relays) claim(key ServiceKey, ports map[int32][]ClusterID, old *ServiceState) []ServiceKey {
	var members []ClusterID
	if old != nil && old.Import != nil {
		for _, p := range old.Import.Ports {
			k := relayKey{key, p.Port}
			if cs, ok := ports[p.Port]; ok && slices.Equal(r.servedBy[k], cs) {
				continue // served by the same members: nothing moves
			}
			for _, c := range r.servedBy[k] {
				r.claims[c] = removeSorted(r.claims[c], k)
				members = append(members, c)
			}
			delete(r.servedBy, k)
		}
	}
	for n, cs := range ports {
		k := relayKey{key, n}
		if have, ok := r.servedBy[k]; ok && slices.Equal(have, cs) {
			continue
		}
		r.servedBy[k] = cs
		for _, c := range cs {
			r.claims[c] = insertSorted(r.claims[c], k)
			members = append(members, c)
		}
	}
	var again []ServiceKey
	seen := map[ServiceKey]bool{key: true}
	for _, c := range slices.Compact(slices.Sorted(slices.Values(members))) {
		claims := r.claims[c]
		if len(claims) == 0 {
			delete(r.claims, c)
		}
		prev, was := r.limit[c]
		var now relayKey
		over := len(claims) > MaxRelayPortsPerMember
		if over {
			now = claims[MaxRelayPortsPerMember-1]
			r.limit[c] = now
		} else {
			delete(r.limit, c)
		}
		if was == over && (!over || prev == now) {
			continue
		}
		// The ports that crossed the limit: above the new one that were
		// under the old one, or under the new one that were above the old.
		var from, to int // claims[from:to] crossed
		switch {
		case !was: // now over: those above the new limit
			from, to = above(claims, now), len(claims)
		case !over: // now under: those above the old limit
			from, to = above(claims, prev), len(claims)
		case now.compare(prev) < 0:
			from, to = above(claims, now), above(claims, prev)
		default:
			from, to = above(claims, prev), above(claims, now)
		}
		for _, k := range claims[from:to] {
			if !seen[k.key] {
				seen[k.key] = true
				again = append(again, k.key)
			}
		}
	}
	return again
}

// insertSorted adds k to sorted claims (once).
func insertSorted(claims []relayKey, k relayKey) []relayKey {
	i, found := slices.BinarySearchFunc(claims, k, relayKey.compare)
	if found {
		return claims
	}
	return slices.Insert(claims, i, k)
}

// removeSorted removes k from sorted claims.
func removeSorted(claims []relayKey, k relayKey) []relayKey {
	if i, found := slices.BinarySearchFunc(claims, k, relayKey.compare); found {
		return slices.Delete(claims, i, i+1)
	}
	return claims
}

// above is the index of the first of sorted claims greater than k.
func above(claims []relayKey, k relayKey) int {
	i, found := slices.BinarySearchFunc(claims, k, relayKey.compare)
	if found {
		i++
	}
	return i
}

// underLimit reports whether a port is within the limit of every member
// that serves it.
func (r *relays) underLimit(k relayKey) (bool, ClusterID) {
	for _, c := range r.servedBy[k] {
		if l, ok := r.limit[c]; ok && k.compare(l) > 0 {
			return false, c
		}
	}
	return true, ""
}

// update gives a service's import ports their relay ports and frees those
// of the ports it no longer has. It returns the other services whose
// relay ports moved (their states must be merged again).
func (r *relays) update(key ServiceKey, old, st *ServiceState) []ServiceKey {
	var want []int32
	servedBy := map[int32][]ClusterID{}
	if st != nil && st.Import != nil {
		for _, p := range st.Import.Ports {
			if p.Protocol == corev1.ProtocolTCP {
				want = append(want, p.Port)
				servedBy[p.Port] = p.Clusters
			}
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	capped := want[min(len(want), MaxRelayPortsPerService):]
	want = want[:min(len(want), MaxRelayPortsPerService)]
	for _, n := range capped {
		delete(servedBy, n)
	}
	out := r.claim(key, servedBy, old)
	var moved []relayKey
	limited := map[int32]ClusterID{}
	for _, n := range want {
		if ok, c := r.underLimit(relayKey{key, n}); !ok {
			limited[n] = c
		}
	}
	if old != nil && old.Import != nil {
		for _, p := range old.Import.Ports {
			if _, over := limited[p.Port]; !slices.Contains(want, p.Port) || over {
				moved = append(moved, r.remove(relayKey{key, p.Port})...)
			}
		}
	}
	for _, n := range want {
		if _, over := limited[n]; !over {
			if _, ok := r.byPort[relayKey{key, n}]; !ok {
				moved = append(moved, r.insert(relayKey{key, n})...)
			}
		}
	}
	if st != nil && st.Import != nil {
		for i := range st.Import.Ports {
			p := &st.Import.Ports[i]
			c, over := limited[p.Port]
			switch {
			case p.Protocol != corev1.ProtocolTCP:
			case slices.Contains(capped, p.Port):
				p.RelayError = fmt.Sprintf("no relay port: a service has at most %d (its lowest TCP ports)", MaxRelayPortsPerService)
			case over:
				p.RelayError = fmt.Sprintf("no relay port: the services member %s serves have at most %d (by namespace, name and port)", c, MaxRelayPortsPerMember)
			case r.byPort[relayKey{key, p.Port}] == 0:
				p.RelayError = fmt.Sprintf("no relay port: all %d (%d-%d) are taken", relaySlots, RelayPortMin, RelayPortMax)
			default:
				p.RelayPort = r.byPort[relayKey{key, p.Port}]
			}
		}
	}
	for _, k := range moved {
		if k.key != key && !slices.Contains(out, k.key) {
			out = append(out, k.key)
		}
	}
	return out
}

// insert places a port: a pinned one on its pinned slot; any other from
// its first choice on, past pinned slots, on the first free slot or the
// first held by a greater port, which it takes (the greater one then
// probes on from there). It returns the ports moved; a full range places
// nothing.
func (r *relays) insert(k relayKey) (moved []relayKey) {
	if n, ok := r.pins[k]; ok {
		r.slots[n], r.byPort[k] = k, n
		return nil
	}
	if r.loose+len(r.pinned) >= relaySlots {
		return nil
	}
	r.loose++
	for pos := k.home(); ; pos = (pos + 1) % relaySlots {
		n := RelayPortMin + pos
		if _, ok := r.pinned[n]; ok {
			continue
		}
		j, taken := r.slots[n]
		if taken && k.compare(j) > 0 {
			continue
		}
		r.slots[n], r.byPort[k] = k, n
		if !taken {
			return moved
		}
		moved = append(moved, j)
		k = j
	}
}

// remove frees a port's slot. A pinned slot stays its port's; any other
// is freed and the ports after it in its run are placed again (reflow).
func (r *relays) remove(k relayKey) (moved []relayKey) {
	n, ok := r.byPort[k]
	if !ok {
		return nil
	}
	delete(r.byPort, k)
	delete(r.slots, n)
	if _, pinned := r.pins[k]; pinned {
		return nil
	}
	r.loose--
	return r.reflow(n)
}

// reflow places again the ports in the run after slot n, which was just
// freed (up to the next free slot, across pinned ones), which may move
// back: the table is then what inserting the remaining ports alone
// would have made.
func (r *relays) reflow(n int32) (moved []relayKey) {
	var run []relayKey
	for pos := (n - RelayPortMin + 1) % relaySlots; ; pos = (pos + 1) % relaySlots {
		if _, ok := r.pinned[RelayPortMin+pos]; ok {
			if RelayPortMin+pos == n {
				break // all the way round
			}
			continue
		}
		j, taken := r.slots[RelayPortMin+pos]
		if !taken {
			break
		}
		run = append(run, j)
		delete(r.slots, RelayPortMin+pos)
	}
	was := make(map[relayKey]int32, len(run))
	for _, j := range run {
		was[j] = r.byPort[j]
		delete(r.byPort, j)
	}
	r.loose -= len(run)
	for _, j := range run {
		r.insert(j)
	}
	for _, j := range run {
		if r.byPort[j] != was[j] {
			moved = append(moved, j)
		}
	}
	return moved
}

// setPins makes pins the pinned relay ports and returns the ports that
// moved. Pins out of the range are dropped; of two pins of one slot the
// smaller port's stays (the ledger has one writer, so two only come from
// an edit by hand). The table is then what inserting its ports after
// the pins would have made, whatever the order.
func (r *relays) setPins(pins map[relayKey]int32) []relayKey {
	clean := map[relayKey]int32{}
	owner := map[int32]relayKey{}
	for k, n := range pins {
		if n < RelayPortMin || n > RelayPortMax {
			continue
		}
		if o, ok := owner[n]; ok {
			if o.compare(k) < 0 {
				continue
			}
			delete(clean, o)
		}
		clean[k], owner[n] = n, k
	}
	var moved []relayKey
	for k, n := range r.pins {
		if m, ok := clean[k]; !ok || m != n {
			moved = append(moved, r.unpin(k)...)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(clean), relayKey.compare) {
		if n, ok := r.pins[k]; !ok || n != clean[k] {
			moved = append(moved, r.pin(k, clean[k])...)
		}
	}
	return moved
}

// unpin frees a pinned slot: its port, if placed, is placed again like
// any other.
func (r *relays) unpin(k relayKey) []relayKey {
	n := r.pins[k]
	_, placed := r.byPort[k]
	if placed {
		delete(r.byPort, k)
		delete(r.slots, n)
	}
	delete(r.pins, k)
	delete(r.pinned, n)
	moved := r.reflow(n)
	if placed {
		moved = append(moved, r.insert(k)...)
		if r.byPort[k] != n {
			moved = append(moved, k)
		}
	}
	return moved
}

// pin gives a port (not pinned) its slot n (not pinned), taking it from
// the port that holds it, which is placed again.
func (r *relays) pin(k relayKey, n int32) []relayKey {
	was, placed := r.byPort[k]
	if placed && was == n {
		// The usual case: the leader persists where a port is. Every
		// port whose probe passes n passed it before (k was smaller
		// than them, and a pinned port is smaller than any), so nothing
		// moves.
		r.pins[k], r.pinned[n] = n, k
		r.loose--
		return nil
	}
	moved := r.remove(k)
	j, taken := r.slots[n]
	if taken {
		delete(r.slots, n)
		delete(r.byPort, j)
		r.loose--
	}
	r.pins[k], r.pinned[n] = n, k
	if taken {
		moved = append(append(moved, r.insert(j)...), j)
	}
	if placed {
		r.insert(k)
		if was != n {
			moved = append(moved, k)
		}
	}
	return moved
}

// relaySlice is the MCS EndpointSlice of cluster c for a service whose
// endpoints in other networks its pods reach through its gateways (nil
// when none does): c's gateway pods on the relay ports of the import ports
// those members serve.
func relaySlice(st *ServiceState, c ClusterInfo, relayed map[ClusterID]bool) *discoveryv1.EndpointSlice {
	if len(relayed) == 0 || len(c.GatewayPods) == 0 {
		return nil
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range st.Import.Ports {
		if p.RelayPort == 0 || !slices.ContainsFunc(p.Clusters, func(id ClusterID) bool { return relayed[id] }) {
			continue
		}
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.RelayPort), AppProtocol: p.AppProtocol})
	}
	if len(ports) == 0 {
		return nil
	}
	var eps []discoveryv1.Endpoint
	for _, ip := range c.GatewayPods {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	addressType := discoveryv1.AddressTypeIPv4
	if strings.Contains(c.GatewayPods[0], ":") {
		addressType = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: st.Key.Namespace,
			Name:      mcsSliceName(st.Key, c.ID, "relay", 0),
			Labels: map[string]string{
				mcsv1b1.LabelServiceName:   st.Key.Name,
				mcsv1b1.LabelSourceCluster: string(c.ID),
				discoveryv1.LabelManagedBy: ControllerName,
				LabelRelay:                 "true",
			},
		},
		AddressType: addressType,
		Ports:       ports,
		Endpoints:   eps,
	}
}
