package assemble

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/eastwest-dev/eastwest/internal/parallel"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/trust"
)

// Roles are the views every member cluster gets.
var Roles = []translate.Role{translate.RoleClient, translate.RoleGateway}

// Options configure an Assembler.
type Options struct {
	// GatewayPort is the east-west gateways' listener port (0: the
	// default).
	GatewayPort uint32
	// ListenAddress is the address the Envoys' listeners bind ("": every
	// address, as in a pod).
	ListenAddress string
	Store         mcs.Options
	// KeepViews keeps every view's current resources for View (`xds
	// translate`, tests). A server does not: the cache holds what it
	// serves, marshalled, and the messages are let go.
	KeepViews bool
	// TunnelPort is the east-west gateways' tunnel listener port (0:
	// mcs.DefaultTunnelPort).
	TunnelPort uint32
	// TrustDomain is the trust domain of the gateways' tunnel identities
	// (empty: translate.DefaultTrustDomain).
	TrustDomain string
	// Anchors, when set, are the operator's trust anchors: the tunnels'
	// trust bundle, and a member's tunnel certificate is usable only when
	// its own anchor issued it for its own gateway identity (members'
	// ca.crt is then not read).
	Anchors *trust.Anchors
	// RotationDelay is how long a member's new tunnel certificate is
	// announced to its peers before its gateways present it (0:
	// DefaultRotationDelay; negative: at once). Now is the clock (nil:
	// time.Now).
	RotationDelay time.Duration
	Now           func() time.Time
}

// DefaultRotationDelay is how long every gateway accepts a member's new
// tunnel certificate before that member's gateways present it: the peers'
// validation contexts and the member's certificate are different Envoys'
// updates, which arrive in any order.
const DefaultRotationDelay = 3 * time.Second

// Update changes one type of one view: Set adds or replaces resources,
// Delete removes names.
type Update struct {
	View   string
	Type   string
	Set    []translate.Resource
	Delete []string
}

// ServiceChange is a service that changed in a Flush, for metrics.
type ServiceChange struct {
	Key   mcs.ServiceKey
	State *mcs.ServiceState // nil: gone
	// ImportDelta is +1 when the service gained its import, -1 when it
	// lost it.
	ImportDelta int
}

// ViewInvalid is a resource of a view that failed validation.
type ViewInvalid struct {
	View string
	translate.Invalid
}

// Plan is what one Flush made: the updates to publish, in order (new and
// changed resources secrets, clusters, endpoints, listeners, routes; then
// deletions in reverse: make before break), the views when they changed,
// the merged state and what changed in it.
type Plan struct {
	Updates []Update
	// Views lists every view's name when the set of views changed (nil:
	// unchanged).
	Views   []string
	State   *mcs.State
	Changes mcs.Changes
	// Changed says whether anything served or reported changed.
	Changed bool
	// Services are the services merged again, for metrics.
	Services []ServiceChange
	// Rebuilt are the members whose Gateway API results were built again
	// (their statuses may have changed).
	Rebuilt []string
	// Invalid are the resources that failed validation in this Flush
	// (their previous versions, if any, stay published).
	Invalid []ViewInvalid
	// Translated counts the resources this Flush translated (valid or
	// not): what a change cost, before the cache skips what did not
	// change.
	Translated int
}

// Assembler turns source events into Plans. It is used by one goroutine.
type Assembler struct {
	opts  Options
	store *mcs.Store
	gw    *gateway.Store

	views     []translate.View
	published map[string]map[mcs.ServiceKey][]ref // view -> service -> published resources
	clusters  map[string]map[string]bool          // view -> published cluster names
	invalid   map[string]map[mcs.ServiceKey][]translate.Invalid
	// topo is how the members reach each other (nil: flat); certs each
	// member's tunnel certificate as last read.
	topo     *translate.Topology
	certs    map[string]*tunnelCert
	gwSig    map[mcs.ServiceKey]string
	imported map[mcs.ServiceKey]bool
	// shape is each service's shapeSignature as last translated: a
	// change that leaves it alone changes endpoints only.
	shape map[mcs.ServiceKey]string

	// translate is translate.ServiceWith; tests replace it to make
	// resources fail validation.
	translate func(*mcs.ServiceState, translate.View, translate.ServiceOptions) translate.Result
	// custom is set while a test's translator replaces ServiceWith.
	custom bool

	// gwResults is what gateway.Build made of each member's Gateway API
	// objects; routesDirty the services whose mesh routes changed.
	gwResults   map[string]gateway.Result
	gwViews     map[string]bool                      // published gateway-api view names
	gwRefSig    map[string]map[mcs.ServiceKey]string // member -> referenced service -> refSignature
	routesDirty map[mcs.ServiceKey]bool

	// current is every view's published resources (type -> name), what
	// View returns.
	current map[string]map[string]map[string]proto.Message

	merged *mcs.Changes // Merge's result, not yet flushed
	plan   Plan
}

type ref struct{ typ, name string }

// New returns an empty Assembler.
func New(opts Options) *Assembler {
	if opts.GatewayPort == 0 {
		opts.GatewayPort = translate.DefaultGatewayPort
	}
	if opts.RotationDelay == 0 {
		opts.RotationDelay = DefaultRotationDelay
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Assembler{
		opts:        opts,
		store:       mcs.NewStore(opts.Store),
		gw:          gateway.NewStore(),
		published:   map[string]map[mcs.ServiceKey][]ref{},
		clusters:    map[string]map[string]bool{},
		invalid:     map[string]map[mcs.ServiceKey][]translate.Invalid{},
		certs:       map[string]*tunnelCert{},
		gwSig:       map[mcs.ServiceKey]string{},
		imported:    map[mcs.ServiceKey]bool{},
		shape:       map[mcs.ServiceKey]string{},
		translate:   translate.ServiceWith,
		gwResults:   map[string]gateway.Result{},
		gwViews:     map[string]bool{},
		gwRefSig:    map[string]map[mcs.ServiceKey]string{},
		routesDirty: map[mcs.ServiceKey]bool{},
		current:     map[string]map[string]map[string]proto.Message{},
	}
}

// SetTranslator replaces the service translation (tests: to make
// resources fail validation); nil restores translate.ServiceWith.
func (a *Assembler) SetTranslator(fn func(*mcs.ServiceState, translate.View, translate.ServiceOptions) translate.Result) {
	a.custom = fn != nil
	if fn == nil {
		fn = translate.ServiceWith
	}
	a.translate = fn
}

// Apply records a source event in the stores that keep its kind
// (event.Kinds: Gateway API objects and Secrets in the Gateway API store,
// the MCS inputs in the MCS store, Namespaces and Services in both);
// member joins and leaves go to both.
func (a *Assembler) Apply(ev event.Event) error {
	stores := event.MCS | event.Gateway
	if ev.Object != nil {
		if stores = event.StoresOf(ev.Object); stores == 0 {
			return fmt.Errorf("%T is not a kind eastwest reads", ev.Object)
		}
	}
	toGateway, toMCS := stores&event.Gateway != 0, stores&event.MCS != 0
	var errs []error
	if toGateway {
		errs = append(errs, a.gw.Apply(ev))
	}
	if toMCS {
		errs = append(errs, a.store.Apply(ev))
	}
	return errors.Join(errs...)
}

// SetAnchors replaces the trust anchors (the operator changed them): the
// next Flush checks every member's tunnel certificate against them again.
func (a *Assembler) SetAnchors(t *trust.Anchors) {
	a.opts.Anchors = t
	clear(a.certs)
}

// SetRelayPins hands the MCS store the relay ledger (mcs.Store.SetRelayPins).
func (a *Assembler) SetRelayPins(p mcs.RelayPins) { a.store.SetRelayPins(p) }

// Merge merges the services the events touched (the first stage of
// Flush, separate so that callers can time it).
func (a *Assembler) Merge() mcs.Changes {
	if a.merged == nil {
		a.syncTunnels()
		ch := a.store.Flush()
		a.merged = &ch
	}
	return *a.merged
}

// Flush merges what changed, builds and translates what depends on it,
// and returns the Plan that brings every view up to date.
func (a *Assembler) Flush() Plan {
	a.plan = Plan{}
	a.flush()
	p := a.plan
	a.plan = Plan{} // the Plan's messages are the caller's to let go
	return p
}

// apply records a Plan's updates in the views' current resources.
func (a *Assembler) apply(updates []Update, viewsChanged bool, views []string) {
	if !a.opts.KeepViews {
		return
	}
	for _, u := range updates {
		byType := a.current[u.View]
		if byType == nil {
			byType = map[string]map[string]proto.Message{}
			a.current[u.View] = byType
		}
		res := byType[u.Type]
		if res == nil {
			res = map[string]proto.Message{}
			byType[u.Type] = res
		}
		for _, r := range u.Set {
			res[r.Name] = r.Message
		}
		for _, n := range u.Delete {
			delete(res, n)
		}
	}
	if viewsChanged {
		for name := range a.current {
			if !slices.Contains(views, name) {
				delete(a.current, name)
			}
		}
	}
}

// Views returns the views as of the last Flush: each member's client and
// gateway views and a gateway-api view per programmed Gateway.
func (a *Assembler) Views() []translate.View { return slices.Clone(a.views) }

// View returns what a view serves as of the last Flush, sorted by type
// (make-before-break order) then name, with the resources of the view
// that failed validation (not served; their previous versions are).
// It needs Options.KeepViews.
func (a *Assembler) View(v translate.View) translate.Result {
	var r translate.Result
	name := v.String()
	for _, typ := range translate.TypeOrder() {
		res := a.current[name][typ]
		for _, n := range slices.Sorted(maps.Keys(res)) {
			r.Resources = append(r.Resources, translate.Resource{Type: typ, Name: n, Message: res[n]})
		}
	}
	r.Invalid = a.Invalid()[name]
	return r
}

// Invalid returns, per view, the resources that failed validation and are
// not published, sorted by type and name.
func (a *Assembler) Invalid() map[string][]translate.Invalid {
	invalid := map[string][]translate.Invalid{}
	for view, bySvc := range a.invalid {
		for _, list := range bySvc {
			invalid[view] = append(invalid[view], list...)
		}
	}
	for view, list := range a.tunnelInvalid(a.store.Snapshot()) {
		invalid[view] = append(invalid[view], list...)
	}
	for view, list := range invalid {
		if len(list) == 0 {
			delete(invalid, view)
			continue
		}
		slices.SortFunc(list, func(a, b translate.Invalid) int {
			return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name))
		})
	}
	return invalid
}

// Gateways returns each member's Gateway API result as of the last Flush.
func (a *Assembler) Gateways() map[string]gateway.Result { return maps.Clone(a.gwResults) }

// Statuses returns a member's Gateway API statuses as of the last Flush.
func (a *Assembler) Statuses(member string) []gateway.Status { return a.gwResults[member].Statuses }

// State returns the merged state as of the last Flush.
func (a *Assembler) State() *mcs.State { return a.store.Snapshot() }

// Local returns a member's own Service and EndpointSlices of a key.
func (a *Assembler) Local(member string, k mcs.ServiceKey) (*mcs.Service, []*mcs.Slice) {
	return a.store.Local(member, k)
}

// flush runs the stages of a Flush: merge, Gateway API builds, views,
// services (by change class), mesh routes, the gateways' routing, the
// Gateway API views, and the ordered updates.
func (a *Assembler) flush() {
	ch := a.Merge()
	a.merged = nil
	state := a.store.Snapshot()
	a.plan.State, a.plan.Changes = state, ch

	// Gateway API: build again the members whose objects changed, or
	// whose routes reference a service that changed.
	rebuilt, gwBackends := a.buildGateways(state, ch)
	// A new topology (networks, gateway addresses, tunnel certificates)
	// changes every view's endpoints of other networks.
	topo := a.topology(state)
	topoChanged := !topo.Equal(a.topo)
	a.topo = topo
	all := ch.Clusters || topoChanged
	viewsChanged := all || len(rebuilt) > 0 && a.gatewayViewsChanged(state)
	var viewNames []string
	if viewsChanged {
		viewNames = a.setViews(state)
	}
	keys := ch.Services
	if all {
		// Every service may look different from a new view; and the
		// services that went away with a member must go too.
		keys = state.ServiceKeys()
		for _, k := range ch.Services {
			if state.Services.Get(k) == nil {
				keys = append(keys, k)
			}
		}
	}

	sets := map[string]map[string][]translate.Resource{} // type -> view -> resources
	dels := map[string]map[string][]string{}             // type -> view -> names
	shapeChanged, gatewayChanged := a.services(state, keys, all, sets, dels)
	// Services with mesh routes go last, once every cluster their routes
	// may name is known, and whenever a shape changed: a route follows
	// its backends being published or withdrawn.
	if shapeChanged || len(a.routesDirty) > 0 {
		a.meshRoutes(state, sets, dels)
	}
	if gatewayChanged || all {
		a.gatewayRouting(state, sets, dels)
	}
	a.translateGateways(state, rebuilt, gwBackends, viewsChanged, sets, dels)

	a.plan.Updates = ordered(sets, dels)
	if viewsChanged {
		a.plan.Views = viewNames
		if a.plan.Views == nil {
			a.plan.Views = []string{}
		}
	}
	a.plan.Rebuilt = rebuilt
	a.plan.Changed = !ch.Empty() || len(rebuilt) > 0 || len(gwBackends) > 0
	a.apply(a.plan.Updates, viewsChanged, viewNames)
}

// setViews makes the views of a new set of members and Gateways, forgets
// what views that are gone had published, and returns the views' names.
func (a *Assembler) setViews(state *mcs.State) []string {
	a.views = a.views[:0]
	for _, id := range state.ClusterIDs() {
		for _, r := range Roles {
			a.views = append(a.views, translate.View{Cluster: id, Role: r, GatewayPort: a.opts.GatewayPort, TunnelPort: a.opts.TunnelPort, Net: a.topo, ListenAddress: a.opts.ListenAddress})
		}
	}
	a.views = append(a.views, a.gatewayViews(state)...)
	a.gwViews = map[string]bool{}
	var names []string
	for _, v := range a.views {
		names = append(names, v.String())
		if v.Role == translate.RoleGatewayAPI {
			a.gwViews[v.String()] = true
		}
	}
	for name := range a.published {
		if !slices.Contains(names, name) {
			delete(a.published, name)
			delete(a.clusters, name)
			delete(a.invalid, name)
		}
	}
	return names
}

// services translates the services that changed for every member view,
// by change class: a service whose shape (ports, type, affinity) did
// not change changed its endpoints only, and only its
// ClusterLoadAssignments are translated again. It reports whether a
// shape changed and whether the gateways' routing must be made again,
// and notes each service's change in the Plan.
func (a *Assembler) services(state *mcs.State, keys []mcs.ServiceKey, all bool, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) (shapeChanged, gatewayChanged bool) {
	endpointsOnly := map[mcs.ServiceKey]bool{}
	for _, key := range keys {
		sig := shapeSignature(state.Services.Get(key))
		if !all && sig != "" && a.shape[key] == sig {
			endpointsOnly[key] = true
		} else {
			shapeChanged = true
		}
		if sig == "" {
			delete(a.shape, key)
		} else {
			a.shape[key] = sig
		}
	}
	a.translateServices(state, keys, endpointsOnly, sets, dels)
	for _, key := range keys {
		st := state.Services.Get(key)
		sig := gatewaySignature(st)
		if a.gwSig[key] != sig {
			gatewayChanged = true
			if sig == "" {
				delete(a.gwSig, key)
			} else {
				a.gwSig[key] = sig
			}
		}
		has := st != nil && st.Import != nil
		delta := 0
		switch {
		case has && !a.imported[key]:
			delta, a.imported[key] = 1, true
		case !has && a.imported[key]:
			delta = -1
			delete(a.imported, key)
		}
		a.plan.Services = append(a.plan.Services, ServiceChange{Key: key, State: st, ImportDelta: delta})
	}
	return shapeChanged, gatewayChanged
}

// meshRoutes translates again, for the client views, every service a
// mesh route attaches to (and those whose last route went away).
func (a *Assembler) meshRoutes(state *mcs.State, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	parents := a.meshParents()
	for k := range a.routesDirty {
		if !slices.Contains(parents, k) {
			parents = append(parents, k) // its last route went away
		}
	}
	clear(a.routesDirty)
	for _, key := range parents {
		for _, v := range a.views {
			if v.Role == translate.RoleClient {
				a.translateService(v, key, state.Services.Get(key), sets, dels)
			}
		}
	}
}

// gatewayRouting makes every east-west gateway's listener and route
// configuration, and its tunnel listener and secrets, again (a service's
// TCP ports, or the members exporting them, came or went), under the zero
// key.
func (a *Assembler) gatewayRouting(state *mcs.State, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	var services []*mcs.ServiceState
	for key := range a.gwSig {
		services = append(services, state.Services.Get(key))
	}
	for _, v := range a.views {
		if v.Role != translate.RoleGateway {
			continue
		}
		r := translate.Gateway(services, v, func(c string) bool { return a.clusters[v.String()][c] })
		a.record(v.String(), mcs.ServiceKey{}, r, sets, dels)
	}
}

// ordered lists the updates make before break: new and changed resources
// secrets, clusters, endpoints, listeners, routes; then the deletions in
// the reverse order.
func ordered(sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) []Update {
	var out []Update
	for _, typ := range translate.TypeOrder() {
		for _, view := range slices.Sorted(maps.Keys(sets[typ])) {
			out = append(out, Update{View: view, Type: typ, Set: sets[typ][view]})
		}
	}
	for _, typ := range slices.Backward(translate.TypeOrder()) {
		for _, view := range slices.Sorted(maps.Keys(dels[typ])) {
			out = append(out, Update{View: view, Type: typ, Delete: dels[typ][view]})
		}
	}
	return out
}

// buildGateways runs gateway.Build for the members that need it and
// returns them: those whose Gateway API objects changed, and those whose
// routes name a service whose shape (import, ports, affinity) changed. A
// referenced service whose endpoints alone changed needs no build: it is
// returned in backends, by member, and only its clusters are translated
// again. A member's mesh parents, old and new, get their client routes
// translated again.
func (a *Assembler) buildGateways(state *mcs.State, ch mcs.Changes) (rebuilt []string, backends map[string]map[mcs.ServiceKey]bool) {
	dirty := map[string]bool{}
	for _, m := range a.gw.TakeDirty() {
		dirty[m] = true
	}
	backends = map[string]map[mcs.ServiceKey]bool{}
	for m, r := range a.gwResults {
		if ch.Clusters {
			dirty[m] = true
			continue
		}
		for _, k := range ch.Touched {
			if !r.Refs[k] || dirty[m] {
				continue
			}
			if a.refSignature(state, m, k) != a.gwRefSig[m][k] {
				dirty[m] = true
				continue
			}
			if backends[m] == nil {
				backends[m] = map[mcs.ServiceKey]bool{}
			}
			backends[m][k] = true
		}
	}
	for _, m := range slices.Sorted(maps.Keys(dirty)) {
		delete(backends, m)
		old := a.gwResults[m]
		for k := range old.Mesh {
			a.routesDirty[k] = true
		}
		in := a.gw.Inputs(m)
		if in == nil {
			delete(a.gwResults, m)
			delete(a.gwRefSig, m)
			rebuilt = append(rebuilt, m)
			continue
		}
		r := gateway.Build(in, lookup{state: state, store: a.store, member: m})
		for k := range r.Mesh {
			a.routesDirty[k] = true
		}
		a.gwResults[m] = r
		sigs := map[mcs.ServiceKey]string{}
		for k := range r.Refs {
			sigs[k] = a.refSignature(state, m, k)
		}
		a.gwRefSig[m] = sigs
		rebuilt = append(rebuilt, m)
	}
	return rebuilt, backends
}

// refSignature is what gateway.Build reads of a service for a member: the
// import's ports and affinity, and the member's own Service's. Endpoints
// are not in it: they change the backends' clusters, not the routes.
func (a *Assembler) refSignature(state *mcs.State, member string, k mcs.ServiceKey) string {
	var b strings.Builder
	if st := state.Services.Get(k); st != nil && st.Import != nil {
		fmt.Fprintf(&b, "import %s %s:", st.Import.Type, st.Import.SessionAffinity)
		for _, p := range st.Import.Ports {
			fmt.Fprintf(&b, " %s/%s/%d", p.Name, p.Protocol, p.Port)
		}
	}
	if svc, _ := a.store.Local(member, k); svc != nil {
		fmt.Fprintf(&b, "; local %s:", svc.SessionAffinity)
		for _, p := range svc.Ports {
			fmt.Fprintf(&b, " %s/%s/%d", p.Name, p.Protocol, p.Port)
		}
	}
	return b.String()
}

// lookup is what gateway.Build reads: the ClusterSet's imports and the
// member's own Services.
type lookup struct {
	state  *mcs.State
	store  *mcs.Store
	member string
}

func (l lookup) Import(k mcs.ServiceKey) *mcs.Import {
	if st := l.state.Services.Get(k); st != nil {
		return st.Import
	}
	return nil
}

func (l lookup) Service(k mcs.ServiceKey) *mcs.Service {
	svc, _ := l.store.Local(l.member, k)
	return svc
}

// clusterOf returns a member's cluster ID ("" while it is left out).
func clusterOf(state *mcs.State, member string) mcs.ClusterID {
	for _, c := range state.Clusters {
		if c.Member == member {
			return c.ID
		}
	}
	return ""
}

// gatewayViews are the gateway-api views: one per Gateway eastwest
// programs, in its member's cluster.
func (a *Assembler) gatewayViews(state *mcs.State) []translate.View {
	var out []translate.View
	for _, m := range slices.Sorted(maps.Keys(a.gwResults)) {
		id := clusterOf(state, m)
		if id == "" {
			continue
		}
		for _, gw := range a.gwResults[m].Gateways {
			out = append(out, translate.View{Cluster: id, Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key), Net: a.topo, ListenAddress: a.opts.ListenAddress})
		}
	}
	return out
}

func (a *Assembler) gatewayViewsChanged(state *mcs.State) bool {
	now := a.gatewayViews(state)
	if len(now) != len(a.gwViews) {
		return true
	}
	for _, v := range now {
		if !a.gwViews[v.String()] {
			return true
		}
	}
	return false
}

// translateGateways translates the Gateways of rebuilt members (all of
// them when the views changed) into their views: each backend service's
// clusters under that service, listeners, routes and certificates under
// the zero key. For members in backends only those services' clusters
// are translated again.
func (a *Assembler) translateGateways(state *mcs.State, rebuilt []string, backends map[string]map[mcs.ServiceKey]bool, all bool, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	members := map[string]bool{}
	for _, m := range rebuilt {
		members[m] = true
	}
	if all {
		for m := range a.gwResults {
			members[m] = true
		}
	}
	for m := range backends {
		if !members[m] {
			members[m] = false // backends only
		}
	}
	for _, m := range slices.Sorted(maps.Keys(members)) {
		id := clusterOf(state, m)
		if id == "" {
			continue
		}
		be := translate.Backends{State: state, Local: func(k mcs.ServiceKey) (*mcs.Service, []*mcs.Slice) { return a.store.Local(m, k) }}
		full := members[m]
		for _, gw := range a.gwResults[m].Gateways {
			v := translate.View{Cluster: id, Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key), Net: a.topo, ListenAddress: a.opts.ListenAddress}
			view := v.String()
			var only func(mcs.ServiceKey) bool
			if !full {
				only = func(k mcs.ServiceKey) bool { return backends[m][k] }
			}
			parts := translate.GatewayBackends(gw, v, be, only)
			for _, k := range slices.SortedFunc(maps.Keys(parts), mcs.ServiceKey.Compare) {
				a.record(view, k, parts[k], sets, dels)
			}
			if !full {
				continue
			}
			for k := range a.published[view] {
				if _, ok := parts[k]; !ok && k != (mcs.ServiceKey{}) {
					a.record(view, k, translate.Result{}, sets, dels) // no longer a backend
				}
			}
			a.record(view, mcs.ServiceKey{}, translate.GatewayListeners(gw, v, be, func(c string) bool { return a.clusters[view][c] }), sets, dels)
		}
	}
}

// meshParents returns every service some member's mesh route attaches to.
func (a *Assembler) meshParents() []mcs.ServiceKey {
	seen := map[mcs.ServiceKey]bool{}
	for _, r := range a.gwResults {
		for k := range r.Mesh {
			seen[k] = true
		}
	}
	return slices.SortedFunc(maps.Keys(seen), mcs.ServiceKey.Compare)
}

// parallelTranslate is the number of (service, view) translations from
// which translateServices uses every core: a start-up with 10,000
// services makes 60,000 of them, a change of one service a handful.
const parallelTranslate = 256

// translateServices translates the services for every member view and
// records the results, in the order of keys then views. Translations are
// pure and run on every core when there are many; recording (which
// updates what each view has published) stays on this goroutine.
func (a *Assembler) translateServices(state *mcs.State, keys []mcs.ServiceKey, endpointsOnly map[mcs.ServiceKey]bool, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	type job struct {
		v         translate.View
		key       mcs.ServiceKey
		st        *mcs.ServiceState
		endpoints bool
		r         translate.Result
	}
	var jobs []job
	for _, key := range keys {
		st := state.Services.Get(key)
		for _, v := range a.views {
			if v.Role != translate.RoleGatewayAPI {
				jobs = append(jobs, job{v: v, key: key, st: st, endpoints: endpointsOnly[key]})
			}
		}
	}
	parallel.For(len(jobs), parallelTranslate, func(i int) {
		j := &jobs[i]
		if j.endpoints {
			j.r = translate.ServiceEndpoints(j.st, j.v)
		} else {
			j.r = a.translate(j.st, j.v, a.serviceOptions(j.v, j.st))
		}
	})
	shareClusters(len(jobs), !a.custom, func(i int) (translate.View, *translate.Result) { return jobs[i].v, &jobs[i].r })
	for _, j := range jobs {
		if j.endpoints {
			a.recordOnly(j.v.String(), j.key, j.r, resourcev3.EndpointType, sets, dels)
		} else {
			a.record(j.v.String(), j.key, j.r, sets, dels)
		}
	}
}

// translateService translates one service for one view and records what to
// set and delete. A resource that fails validation keeps its previous
// version published.
func (a *Assembler) translateService(v translate.View, key mcs.ServiceKey, st *mcs.ServiceState, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	a.record(v.String(), key, a.translate(st, v, a.serviceOptions(v, st)), sets, dels)
}

// record sets what a translation made in a view under a key (a service;
// the zero key for a Gateway's view), and deletes what the key had and no
// longer has. A resource that fails validation keeps its previous version.
func (a *Assembler) record(view string, key mcs.ServiceKey, r translate.Result, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	a.recordOnly(view, key, r, "", sets, dels)
}

// recordOnly is record for a translation of one type only (an
// endpoint-only change): the key's resources of other types, and their
// validation failures, stay as they are. only "" records every type.
func (a *Assembler) recordOnly(view string, key mcs.ServiceKey, r translate.Result, only string, sets map[string]map[string][]translate.Resource, dels map[string]map[string][]string) {
	a.plan.Translated += len(r.Resources) + len(r.Invalid)
	keep := map[ref]bool{}
	var refs []ref
	for _, res := range r.Resources {
		rf := ref{res.Type, res.Name}
		keep[rf] = true
		refs = append(refs, rf)
		add(sets, res.Type, view, res)
	}
	for _, inv := range r.Invalid {
		keep[ref{inv.Type, inv.Name}] = true
	}
	if a.published[view] == nil {
		a.published[view] = map[mcs.ServiceKey][]ref{}
		a.clusters[view] = map[string]bool{}
		a.invalid[view] = map[mcs.ServiceKey][]translate.Invalid{}
	}
	for _, old := range a.published[view][key] {
		switch {
		case only != "" && old.typ != only:
			refs = append(refs, old) // not translated: stays as it is
		case !keep[old]:
			if dels[old.typ] == nil {
				dels[old.typ] = map[string][]string{}
			}
			dels[old.typ][view] = append(dels[old.typ][view], old.name)
			if old.typ == resourcev3.ClusterType {
				delete(a.clusters[view], old.name)
			}
		case !slices.Contains(refs, old):
			refs = append(refs, old) // invalid now: its previous version stays
		}
	}
	for _, rf := range refs {
		if rf.typ == resourcev3.ClusterType {
			a.clusters[view][rf.name] = true
		}
	}
	if len(refs) == 0 {
		delete(a.published[view], key)
	} else {
		a.published[view][key] = refs
	}
	invalid := r.Invalid
	if only != "" {
		for _, inv := range a.invalid[view][key] {
			if inv.Type != only {
				invalid = append(invalid, inv)
			}
		}
	}
	if len(invalid) == 0 {
		delete(a.invalid[view], key)
	} else {
		a.invalid[view][key] = invalid
		for _, inv := range r.Invalid {
			a.plan.Invalid = append(a.plan.Invalid, ViewInvalid{View: view, Invalid: inv})
		}
	}
}

// serviceOptions gives a service's translation its mesh routes in the
// view's member cluster, and what the view serves.
func (a *Assembler) serviceOptions(v translate.View, st *mcs.ServiceState) translate.ServiceOptions {
	if v.Role != translate.RoleClient || st == nil {
		return translate.ServiceOptions{}
	}
	state := a.store.Snapshot()
	member := ""
	for _, c := range state.Clusters {
		if c.ID == v.Cluster {
			member = c.Member
		}
	}
	view := v.String()
	return translate.ServiceOptions{
		Routes: func(port int32) []*gateway.RouteRule {
			return gateway.MeshRules(a.gwResults[member].Mesh[st.Key], port)
		},
		Published: func(c string) bool { return a.clusters[view][c] },
		Import: func(k mcs.ServiceKey) *mcs.Import {
			if s := state.Services.Get(k); s != nil {
				return s.Import
			}
			return nil
		},
	}
}

func add(sets map[string]map[string][]translate.Resource, typ, view string, r translate.Resource) {
	if sets[typ] == nil {
		sets[typ] = map[string][]translate.Resource{}
	}
	sets[typ][view] = append(sets[typ][view], r)
}

// shareClusters makes the views of one role share one Cluster message
// per name when their translations are equal (a service's cluster is the
// same for every client, and for every gateway that tunnels, or does
// not): the cache then marshals it once for all of them and they share
// its bytes. ServiceWith makes a cluster of the service, the view's role
// and whether it tunnels alone (never its cluster), so equal is known
// without comparing; another translator's are compared.
func shareClusters(n int, known bool, at func(i int) (translate.View, *translate.Result)) {
	type key struct {
		role    translate.Role
		tunnels bool
		name    string
	}
	first := map[key]proto.Message{}
	for i := range n {
		v, r := at(i)
		for j, res := range r.Resources {
			if res.Type != resourcev3.ClusterType {
				continue
			}
			k := key{v.Role, v.Tunnels(), res.Name}
			if m, ok := first[k]; !ok {
				first[k] = res.Message
			} else if known || proto.Equal(m, res.Message) {
				r.Resources[j].Message = m
			}
		}
	}
}

// shapeSignature is what a service's clusters, listeners and routes are
// made of besides its endpoints: the import's type, affinity and ports,
// the members exporting each port (a tunnelling gateway has a tunnel
// cluster for the ports its member exports), and the members importing
// it (only their views have it). Empty for a service without an import.
func shapeSignature(st *mcs.ServiceState) string {
	if st == nil || st.Import == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %v %v:", st.Import.Type, st.Import.SessionAffinity, st.Import.Passthrough, st.Import.ImportedIn)
	for _, p := range st.Import.Ports {
		app := ""
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		fmt.Fprintf(&b, " %s/%s/%d/%s%v/%d", p.Name, p.Protocol, p.Port, app, p.Clusters, p.RelayPort)
	}
	return b.String()
}

// gatewaySignature changes when a service's gateway routes or tunnel
// filter chains would: its TCP ports, the members exporting them, or the
// members importing it come or go.
func gatewaySignature(st *mcs.ServiceState) string {
	if st == nil || st.Import == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v ", st.Import.ImportedIn)
	if st.Import.Passthrough {
		b.WriteString("passthrough ") // no HTTP route; tcp_proxy in the tunnel
	}
	for _, p := range translate.ServedPorts(st) {
		// The members exporting a port: a tunnel listener serves the
		// ports its own member exports.
		fmt.Fprintf(&b, "%s%v,", translate.HostPort(st.Key, p.Port), p.Clusters)
	}
	return b.String()
}
