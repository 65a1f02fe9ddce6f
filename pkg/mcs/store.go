package mcs

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/event"
)

// ControllerName is the value of endpointslice.kubernetes.io/managed-by on
// the EndpointSlices eastwest writes. Slices carrying it are never read back
// as endpoints of an exported service.
const ControllerName = "mcs-controller.eastwest.io"

// Options configure a Store.
type Options struct {
	// ClusterSet, when set, is the ClusterSet's name: a member whose
	// clusterset.k8s.io ClusterProperty names another set is left out of
	// the merge. When empty the property is reported, not enforced.
	ClusterSet string
	// Networks gives members (by member name) the network their own
	// network.eastwest.io ClusterProperty does not declare: the property,
	// when a member has one, wins.
	Networks map[string]string
	// GatewayNamespace is the namespace of every member's east-west
	// gateway Services, their tunnel Secrets and their pods: only Services
	// there count as the member's gateways (DefaultGatewayNamespace when
	// empty). It is the operator's choice, never a member's: a Service
	// labelled LabelGateway in any other namespace is ignored and
	// reported (ClusterInfo.IgnoredGateways), so a namespace user cannot
	// declare a gateway, supply its certificate or add its addresses.
	GatewayNamespace string
	// GatewayNamespaces overrides GatewayNamespace per member (by member
	// name), for members whose gateways the chart installed elsewhere.
	GatewayNamespaces map[string]string
	// MemberProperties are properties the operator gives members (by
	// member name): each wins over the member's own ClusterProperty of
	// that name.
	MemberProperties map[string]map[string]string
	// OperatorProperties are the property names only the operator sets
	// (MemberProperties): a member's own ClusterProperty of such a name
	// is ignored and reported (ClusterInfo.PropertyWarnings). A member
	// admin who could declare its member's jurisdiction could bring it
	// into a strict selection meant to keep traffic out of it.
	OperatorProperties []string
}

// effectiveProperties are a member's properties as the ClusterSet uses
// them, from three places, each winning over the one before:
//   - the member's own ClusterProperties (a member admin's), less the
//     names only the operator sets;
//   - its ClusterProfile's status.properties (the fleet manager's, read
//     from the inventory namespace the operator names);
//   - the operator's own (MemberProperties).
//
// The profile wins over the member's own objects because it comes from
// the operator's side of the trust boundary (docs/security.md): a member
// admin cannot rename the cluster or move it to another region or
// jurisdiction the fleet manager recorded. Each own value set aside is
// a warning.
func (o Options) effectiveProperties(member string, own map[string]string, profile *Profile) (map[string]string, []string) {
	operator := o.MemberProperties[member]
	var ignored []string
	for _, name := range o.OperatorProperties {
		if v, ok := own[name]; ok && operator[name] != v && (profile == nil || profile.Properties[name] != v) {
			ignored = append(ignored, name)
		}
	}
	var overridden []string
	if profile != nil {
		for name, v := range profile.Properties {
			if ov, ok := own[name]; ok && ov != v && !slices.Contains(ignored, name) && operator[name] == "" {
				overridden = append(overridden, name)
			}
		}
		slices.Sort(overridden)
	}
	if len(operator) == 0 && len(ignored) == 0 && (profile == nil || len(profile.Properties) == 0) {
		return own, nil
	}
	out := maps.Clone(own)
	if out == nil {
		out = map[string]string{}
	}
	var warnings []string
	for _, name := range ignored {
		warnings = append(warnings, fmt.Sprintf("property %s=%q of the member ignored: only the operator sets %s (--operator-properties)", name, own[name], name))
		delete(out, name)
	}
	for _, name := range overridden {
		warnings = append(warnings, fmt.Sprintf("property %s=%q of the member overridden by its ClusterProfile %s (%q)", name, own[name], profile.Name, profile.Properties[name]))
	}
	if profile != nil {
		maps.Copy(out, profile.Properties)
	}
	maps.Copy(out, operator)
	return out, warnings
}

// gatewayNamespace is the namespace a member's gateway Services must be in.
func (o Options) gatewayNamespace(member string) string {
	if ns := o.GatewayNamespaces[member]; ns != "" {
		return ns
	}
	if o.GatewayNamespace != "" {
		return o.GatewayNamespace
	}
	return DefaultGatewayNamespace
}

// Store holds every member cluster's inputs and the merged state. It is
// owned by one goroutine (the writer): Apply events as they come, Flush to
// merge the services they touched. It is not safe for concurrent use; the
// States it returns are.
type Store struct {
	opts     Options
	members  map[string]*member
	ordered  []*member // members in the merge, sorted by ID
	clusters []ClusterInfo
	services serviceBuilder

	dirty         map[ServiceKey]struct{}
	clustersDirty bool
	snapshot      *State
	relays        *relays
	// loops are, per member, the addresses of its gateways: never
	// endpoints of a service (loop.go).
	loops map[string]map[string]bool
}

// member is everything the Store holds of one member cluster.
type member struct {
	name       string
	id         ClusterID // empty while left out of the merge
	err        string
	properties map[string]string
	// profile is the member's ClusterProfile, from the inventory (nil:
	// none).
	profile *Profile
	// props are its properties within the bounds (ClusterInfo's).
	props      map[string]string
	namespaces map[string]bool // namespace -> exists and is not terminating
	services   map[ServiceKey]*Service
	exports    map[ServiceKey]*Export
	slices     map[ServiceKey]map[string]*Slice
	// sliceOwner maps a slice (namespace/name) to the service it was last
	// filed under, so that relabelling or deleting it finds it.
	sliceOwner map[ServiceKey]ServiceKey
	// gateways are the member's east-west gateway Services.
	gateways map[ServiceKey]gatewayService
	// ignored are the Services labelled as gateways outside the member's
	// gateway namespace: not gateways, reported.
	ignored map[ServiceKey]bool
	// tunnel is the state of the member's tunnel certificate, as the
	// caller that reads Secrets last said (SetTunnel); nil while none has
	// (a Store used alone judges no certificate).
	tunnel *TunnelStatus
}

// TunnelStatus is whether a member's gateways hold a usable tunnel
// certificate (its tunnel Secret), and what is wrong with it.
type TunnelStatus struct {
	// Usable: a valid certificate is in use (perhaps the last good one).
	Usable bool
	// Problem says what is wrong with the Secret as it is now; empty
	// when nothing is.
	Problem string
}

// TunnelSecrets returns, as of the events applied so far, the tunnel
// Secret (namespace/name) of every member with a gateway Service: what
// the caller reads before telling SetTunnel.
func (s *Store) TunnelSecrets() map[string]string {
	out := map[string]string{}
	for name, m := range s.members {
		for _, k := range slices.SortedFunc(maps.Keys(m.gateways), ServiceKey.Compare) {
			out[name] = m.gateways[k].secret
			break
		}
	}
	return out
}

// MemberID is the cluster ID a member would have as of the events applied
// so far: its cluster.clusterset.k8s.io property, else its name (not yet
// checked for uniqueness or form: that is the next Flush's).
func (s *Store) MemberID(member string) ClusterID {
	if m := s.members[member]; m != nil {
		props, _ := s.opts.effectiveProperties(member, m.properties, m.profile)
		if v, ok := props[about.PropertyClusterID]; ok {
			return ClusterID(v)
		}
	}
	return ClusterID(member)
}

// SetTunnel records the state of a member's tunnel certificate: other
// networks reach the member only while it is usable (GatewayError, the
// Reachable condition), and a problem is shown (ClusterInfo.TunnelError).
func (s *Store) SetTunnel(member string, st TunnelStatus) {
	if m := s.members[member]; m != nil && (m.tunnel == nil || *m.tunnel != st) {
		m.tunnel = &st
		s.clustersDirty = true
	}
}

// RelayPins are relay ports persisted by the write-back leader (the relay
// ledger): per service, port -> relay port.
type RelayPins map[ServiceKey]map[int32]int32

// SetRelayPins makes pins the pinned relay ports: a pinned port keeps its
// relay port while it exists, and no other port takes it even while it
// does not (a restart, a member not synced yet). Ports the ledger does
// not hold yet are placed around them as before, the same on every
// replica. The services whose relay ports moved are merged again at the
// next Flush.
func (s *Store) SetRelayPins(pins RelayPins) {
	flat := map[relayKey]int32{}
	for key, ports := range pins {
		for p, n := range ports {
			flat[relayKey{key, p}] = n
		}
	}
	for _, k := range s.relays.setPins(flat) {
		if s.services.get(k.key) != nil {
			s.dirty[k.key] = struct{}{}
		}
	}
}

// NewStore returns an empty Store.
func NewStore(opts Options) *Store {
	return &Store{
		opts:    opts,
		members: map[string]*member{},
		dirty:   map[ServiceKey]struct{}{},
		relays:  newRelays(),
	}
}

// Changes lists what a Flush changed.
type Changes struct {
	// Services are the services whose state changed, sorted; a key whose
	// State.Services entry is missing was removed.
	Services []ServiceKey
	// Clusters is true when the member list or a member's ID changed.
	Clusters bool
	// Touched are the services whose inputs (Service, EndpointSlices,
	// exports) changed in some member, exported or not: what a Gateway
	// API backendRef to a plain Service follows.
	Touched []ServiceKey
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Services) == 0 && !c.Clusters }

// Apply records one event. The merge waits for Flush, so a burst of events
// costs one merge per service it touches. An event the Store cannot use
// returns an error and changes nothing.
func (s *Store) Apply(ev event.Event) error {
	if ev.Member == "" {
		return fmt.Errorf("event without a member cluster")
	}
	switch ev.Op {
	case event.OpLeave:
		if _, ok := s.members[ev.Member]; ok {
			delete(s.members, ev.Member)
			s.clustersDirty = true
		}
		return nil
	case event.OpJoin:
		s.member(ev.Member)
		return nil
	case event.OpUpsert, event.OpDelete:
	default:
		return fmt.Errorf("unknown op %v", ev.Op)
	}
	if ev.Object == nil {
		return fmt.Errorf("%s event without an object", ev.Op)
	}
	del := ev.Op == event.OpDelete
	m := s.member(ev.Member)
	key := ServiceKey{Namespace: ev.Object.GetNamespace(), Name: ev.Object.GetName()}
	switch o := ev.Object.(type) {
	case *corev1.Namespace:
		exists := !del && o.DeletionTimestamp == nil && o.Status.Phase != corev1.NamespaceTerminating
		if m.namespaces[o.Name] != exists {
			m.namespaces[o.Name] = exists
			s.markNamespace(m, o.Name)
		}
		if !exists {
			delete(m.namespaces, o.Name)
		}
	case *corev1.Service:
		if del {
			delete(m.services, key)
		} else {
			m.services[key] = serviceFrom(o)
		}
		s.mark(m, key)
		s.setGateway(m, key, o, del)
	case *mcsv1b1.ServiceExport:
		s.setExport(m, key, del, func() *Export { return exportFromV1beta1(o) })
	case *mcsv1a1.ServiceExport:
		s.setExport(m, key, del, func() *Export { return exportFromV1alpha1(o) })
	case *discoveryv1.EndpointSlice:
		s.setSlice(m, key, o, del)
	case *cpv1a1.ClusterProfile:
		m.profile = nil
		if !del {
			m.profile = profileFrom(o)
		}
		s.clustersDirty = true
	case *about.ClusterProperty:
		if del {
			delete(m.properties, o.Name)
		} else {
			m.properties[o.Name] = o.Spec.Value
		}
		// Every property is part of the member's ClusterInfo: cluster
		// selectors match any of them.
		s.clustersDirty = true
	default:
		return fmt.Errorf("unsupported object %T", ev.Object)
	}
	return nil
}

// setGateway records (or forgets) a member's east-west gateway Service;
// its addresses are part of the member's ClusterInfo.
func (s *Store) setGateway(m *member, key ServiceKey, svc *corev1.Service, del bool) {
	old, had := m.gateways[key]
	labelled := !del && isGateway(svc)
	if outside := labelled && key.Namespace != s.opts.gatewayNamespace(m.name); outside != m.ignored[key] {
		if outside {
			m.ignored[key] = true
		} else {
			delete(m.ignored, key)
		}
		s.clustersDirty = true
	}
	if !labelled || m.ignored[key] {
		if had {
			delete(m.gateways, key)
			s.clustersDirty = true
		}
		return
	}
	var g gatewayService
	g.addresses, g.problem = gatewayAddresses(svc)
	g.secret, g.local = tunnelSecret(svc), localGateway(svc)
	sameLocal := (old.local == nil) == (g.local == nil) && (g.local == nil || *old.local == *g.local)
	if !had || !slices.Equal(old.addresses, g.addresses) || old.problem != g.problem || old.secret != g.secret || !sameLocal {
		m.gateways[key] = g
		s.clustersDirty = true
	}
}

func (s *Store) setExport(m *member, key ServiceKey, del bool, export func() *Export) {
	if del {
		delete(m.exports, key)
	} else {
		m.exports[key] = export()
	}
	s.mark(m, key)
}

// setSlice files an EndpointSlice under the service its
// kubernetes.io/service-name label names (Rule 6). Slices without the label,
// and the MCS slices eastwest itself writes, are not endpoints of an
// exported service.
func (s *Store) setSlice(m *member, sliceKey ServiceKey, es *discoveryv1.EndpointSlice, del bool) {
	var owner ServiceKey
	if !del && es.Labels[discoveryv1.LabelManagedBy] != ControllerName {
		if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
			owner = ServiceKey{Namespace: es.Namespace, Name: name}
		}
	}
	if old, ok := m.sliceOwner[sliceKey]; ok && old != owner {
		if set := m.slices[old]; set != nil {
			delete(set, sliceKey.Name)
			if len(set) == 0 {
				delete(m.slices, old)
			}
		}
		delete(m.sliceOwner, sliceKey)
		s.mark(m, old)
		s.gatewaySliceChanged(m, old)
	}
	if owner.Name == "" {
		return
	}
	set := m.slices[owner]
	if set == nil {
		set = map[string]*Slice{}
		m.slices[owner] = set
	}
	set[sliceKey.Name] = sliceFrom(es)
	m.sliceOwner[sliceKey] = owner
	s.mark(m, owner)
	s.gatewaySliceChanged(m, owner)
}

// gatewaySliceChanged notes that a gateway Service's pods may have
// changed: they are part of the member's ClusterInfo.
func (s *Store) gatewaySliceChanged(m *member, owner ServiceKey) {
	if _, ok := m.gateways[owner]; ok {
		s.clustersDirty = true
	}
}

func (s *Store) member(name string) *member {
	m, ok := s.members[name]
	if !ok {
		m = &member{
			name:       name,
			properties: map[string]string{},
			namespaces: map[string]bool{},
			services:   map[ServiceKey]*Service{},
			exports:    map[ServiceKey]*Export{},
			slices:     map[ServiceKey]map[string]*Slice{},
			sliceOwner: map[ServiceKey]ServiceKey{},
			gateways:   map[ServiceKey]gatewayService{},
			ignored:    map[ServiceKey]bool{},
		}
		s.members[name] = m
		s.clustersDirty = true
	}
	return m
}

// mark records that a service must be merged again. Changes in members left
// out of the merge cannot change any service.
func (s *Store) mark(m *member, key ServiceKey) {
	if m.id != "" || s.clustersDirty {
		s.dirty[key] = struct{}{}
	}
}

// markNamespace marks every service in a namespace: its existence decides
// where imports are wanted and whether the member's exports count.
func (s *Store) markNamespace(m *member, ns string) {
	for key := range s.services.keys() {
		if key.Namespace == ns {
			s.dirty[key] = struct{}{}
		}
	}
	for key := range m.exports {
		if key.Namespace == ns {
			s.dirty[key] = struct{}{}
		}
	}
}

// markAll marks every service: a member joined, left or changed its ID, and
// any service may be imported into or exported from it. This is rare and
// costs a full merge.
func (s *Store) markAll() {
	for key := range s.services.keys() {
		s.dirty[key] = struct{}{}
	}
	for _, m := range s.members {
		for key := range m.exports {
			s.dirty[key] = struct{}{}
		}
	}
}

// Flush merges every service touched since the last Flush and reports what
// changed. Its cost is proportional to the services touched, not to the
// ClusterSet.
func (s *Store) Flush() Changes {
	var ch Changes
	if s.clustersDirty {
		ch.Clusters = s.resolveClusters()
		s.clustersDirty = false
		if ch.Clusters {
			s.markAll()
		}
	}
	if len(s.dirty) == 0 {
		if ch.Clusters {
			s.snapshot = nil
		}
		return ch
	}
	in := make([]ClusterInput, len(s.ordered))
	// Services whose relay ports another's moved are merged again, in
	// the same Flush (relay.go).
	var again []ServiceKey
	merge := func(key ServiceKey) {
		for i, m := range s.ordered {
			in[i] = m.input(key)
			in[i].Slices, in[i].Loops = withoutLoops(in[i].Slices, s.loops[m.name])
		}
		st := MergeService(key, in)
		prev := s.services.get(key)
		again = append(again, s.relays.update(key, prev, st)...)
		had := prev != nil
		if st == nil {
			if !had {
				return
			}
			s.services.delete(key)
		} else {
			s.services.set(key, st)
		}
		ch.Services = append(ch.Services, key)
	}
	for key := range s.dirty {
		ch.Touched = append(ch.Touched, key)
		merge(key)
	}
	for len(again) > 0 {
		key := again[0]
		again = again[1:]
		merge(key)
	}
	slices.SortFunc(ch.Services, ServiceKey.Compare)
	ch.Services = slices.Compact(ch.Services)
	if len(s.dirty) > 64 {
		// A cleared map keeps its size, and ranging over it costs that
		// size: after the first full merge, every Flush would scan the
		// whole ClusterSet's worth of empty buckets.
		s.dirty = map[ServiceKey]struct{}{}
	} else {
		clear(s.dirty)
	}
	if !ch.Empty() {
		s.snapshot = nil
	}
	return ch
}

func (m *member) input(key ServiceKey) ClusterInput {
	in := ClusterInput{
		Cluster:         m.id,
		Properties:      m.props,
		NamespaceExists: m.namespaces[key.Namespace],
		Export:          m.exports[key],
		Service:         m.services[key],
	}
	if set := m.slices[key]; len(set) > 0 {
		in.Slices = make([]*Slice, 0, len(set))
		for _, name := range slices.Sorted(maps.Keys(set)) {
			in.Slices = append(in.Slices, set[name])
		}
	}
	return in
}

// resolveClusters gives every member its ID (Rule: a ClusterSet is a set of
// member clusters with unique IDs) and reports whether any changed. A
// member whose ID is not an RFC 1123 DNS label, is already taken by a member
// of a smaller name, or that belongs to another ClusterSet is left out of
// the merge with the reason.
func (s *Store) resolveClusters() bool {
	names := slices.SortedFunc(maps.Keys(s.members), s.olderFirst)
	taken := map[ClusterID]string{}
	// claimed are, by ID, the members left out for claiming a taken ID.
	claimed := map[ClusterID][]string{}
	var ordered []*member
	var infos []ClusterInfo
	var problems [][]string
	var noTunnels []string
	for _, name := range names {
		m := s.members[name]
		props, ignored := s.opts.effectiveProperties(name, m.properties, m.profile)
		id := ClusterID(name)
		if v, ok := props[about.PropertyClusterID]; ok {
			id = ClusterID(v)
		}
		set := props[about.PropertyClusterSet]
		m.id, m.err = "", ""
		switch {
		case len(validation.IsDNS1123Label(string(id))) > 0:
			m.err = fmt.Sprintf("cluster ID %q is not an RFC 1123 DNS label: %s", id, validation.IsDNS1123Label(string(id))[0])
		case taken[id] != "":
			m.err = fmt.Sprintf("cluster ID %q is already used by member %q", id, taken[id])
			if m.profile != nil {
				m.err += " (whose ClusterProfile is older, or who has none)"
			}
			claimed[id] = append(claimed[id], name)
		case s.opts.ClusterSet != "" && set != "" && set != s.opts.ClusterSet:
			m.err = fmt.Sprintf("member belongs to ClusterSet %q, not %q", set, s.opts.ClusterSet)
		default:
			m.id = id
			taken[id] = name
			ordered = append(ordered, m)
		}
		network, declared := props[about.PropertyNetwork]
		if !declared {
			network = s.opts.Networks[name]
		}
		info := ClusterInfo{Member: name, ID: m.id, ClusterSet: set, Error: m.err, Network: network, Profile: m.profile.info()}
		info.Properties, info.PropertyWarnings = boundedProperties(props, m.id, network)
		info.PropertyWarnings = append(ignored, info.PropertyWarnings...)
		m.props = info.Properties
		why := m.gatewayInfo(&info)
		if len(info.Gateways) > 0 {
			info.GatewayWarnings = why
		}
		noTunnel := ""
		if info.TunnelSecret != "" && m.tunnel != nil {
			info.TunnelError = m.tunnel.Problem
			if !m.tunnel.Usable {
				noTunnel = "its gateways have no usable tunnel certificate: " + cmp.Or(m.tunnel.Problem, "tunnel Secret "+info.TunnelSecret+" not usable")
			}
		}
		infos, problems, noTunnels = append(infos, info), append(problems, why), append(noTunnels, noTunnel)
	}
	reportUnreachable(infos, problems, noTunnels)
	for i := range infos {
		for _, other := range claimed[infos[i].ID] {
			infos[i].PropertyWarnings = append(infos[i].PropertyWarnings, fmt.Sprintf("cluster ID %q is claimed by member %q too: left out", infos[i].ID, other))
		}
	}
	slices.SortFunc(ordered, func(a, b *member) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	changed := !equalClusterInfos(infos, s.clusters)
	s.ordered, s.clusters = ordered, infos
	if changed {
		s.loops = loopAddresses(infos)
	}
	return changed
}

// Local returns a member's own Service and its EndpointSlices (sorted by
// name), exported or not; nil when the member has no such Service. The
// values are shared and immutable.
func (s *Store) Local(member string, key ServiceKey) (*Service, []*Slice) {
	m := s.members[member]
	if m == nil || m.services[key] == nil {
		return nil, nil
	}
	in := m.input(key)
	return in.Service, in.Slices
}

// Service returns the merged state of one service as of the last Flush, or
// nil.
func (s *Store) Service(key ServiceKey) *ServiceState { return s.services.get(key) }

// State returns the state as of the last Flush. The State is shared by
// callers until the next Flush that changes something; it is built only
// when asked for.
func (s *Store) State() *State {
	if s.snapshot == nil {
		s.snapshot = &State{
			Clusters: slices.Clone(s.clusters),
			Services: s.services.snapshot(),
		}
	}
	return s.snapshot
}
