package assemble

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/eastwest-dev/eastwest/internal/parallel"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
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
	// Translate translates one service for one view (nil:
	// translate.ServiceWith). Tests give one that makes resources fail
	// validation.
	Translate func(*mcs.ServiceState, translate.View, translate.ServiceOptions) translate.Result
}

// DefaultRotationDelay is how long every gateway accepts a member's new
// tunnel certificate before that member's gateways present it: the peers'
// validation contexts and the member's certificate are different Envoys'
// updates, which arrive in any order.
const DefaultRotationDelay = 3 * time.Second

// Assembler turns source events into Plans. It is used by one goroutine.
// Its parts each own one concern: the stores (mcs.Store, and the Gateway
// API's in gwapi), the views and the topology they see, the classifier
// (what a change touches), the Gateway API scheduling (gwapi), the
// ledger of what every view publishes, and the Plan being built.
type Assembler struct {
	opts  Options
	store *mcs.Store

	views []translate.View
	// topo is how the members reach each other (nil: flat); certs each
	// member's tunnel certificate as last read.
	topo    *translate.Topology
	certs   map[string]*tunnelCert
	classes *classifier
	gwapi   *gatewayAPI
	ledger  *ledger
	zones   zoneViews
	// fresh, during a Flush that only makes new zone views, are the views
	// (by name) that are new, and changed the services that changed: the
	// others need nothing translated again (nil: every view and service
	// as the Flush says).
	fresh   map[string]bool
	changed map[mcs.ServiceKey]bool

	merged *mcs.Changes // Merge's result, not yet flushed
	plan   *planBuilder
}

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
		opts:    opts,
		store:   mcs.NewStore(opts.Store),
		certs:   map[string]*tunnelCert{},
		classes: newClassifier(),
		gwapi:   newGatewayAPI(),
		ledger:  newLedger(opts.KeepViews),
	}
}

// translate is Options.Translate, else translate.ServiceWith.
func (a *Assembler) translate(st *mcs.ServiceState, v translate.View, o translate.ServiceOptions) translate.Result {
	if a.opts.Translate != nil {
		return a.opts.Translate(st, v, o)
	}
	return translate.ServiceWith(st, v, o)
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
		errs = append(errs, a.gwapi.store.Apply(ev))
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
	a.plan = newPlanBuilder()
	a.flush()
	p := a.plan.Plan
	a.plan = nil // the Plan's messages are the caller's to let go
	return p
}

// Views returns the views as of the last Flush: each member's client and
// gateway views and a gateway-api view per programmed Gateway.
func (a *Assembler) Views() []translate.View { return slices.Clone(a.views) }

// View returns what a view serves as of the last Flush, sorted by type
// (make-before-break order) then name, with the resources of the view
// that failed validation (not served; their previous versions are).
// It needs Options.KeepViews.
func (a *Assembler) View(v translate.View) translate.Result {
	return translate.Result{Resources: a.ledger.view(v.String()), Invalid: a.Invalid()[v.String()]}
}

// Invalid returns, per view, the resources that failed validation and are
// not published, sorted by type and name.
func (a *Assembler) Invalid() map[string][]translate.Invalid {
	invalid := a.ledger.invalidByView()
	for view, list := range a.tunnelInvalid(a.store.State()) {
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
func (a *Assembler) Gateways() map[string]gatewayapi.Result { return maps.Clone(a.gwapi.results) }

// Statuses returns a member's Gateway API statuses as of the last Flush.
func (a *Assembler) Statuses(member string) []gatewayapi.Status {
	return a.gwapi.results[member].Statuses
}

// flush runs the stages of a Flush: merge, Gateway API builds, views,
// services (by change class), mesh routes, the gateways' routing, the
// Gateway API views, and the ordered updates.
func (a *Assembler) flush() {
	ch := a.Merge()
	a.merged = nil
	state := a.store.State()
	a.plan.State, a.plan.Changes = state, ch

	// Gateway API: build again the members whose objects changed, or
	// whose routes reference a service that changed.
	rebuilt, gwBackends := a.gwapi.build(state, a.store, ch)
	// A new topology (networks, gateway addresses, tunnel certificates)
	// changes every view's endpoints of other networks.
	topo := a.topology(state)
	topoChanged := !topo.Equal(a.topo)
	a.topo = topo
	// A new zone view needs every service translated for it; when it is
	// all that changed, only for it (fresh), and the other views only
	// the services that changed.
	zonesOnly := a.zones.changed && !ch.Clusters && !topoChanged
	all := ch.Clusters || topoChanged || a.zones.changed
	a.zones.changed = false
	viewsChanged := all || len(rebuilt) > 0 && a.gwapi.viewsChanged(state, a.baseView())
	var viewNames []string
	a.fresh, a.changed = nil, nil
	if viewsChanged {
		before := map[string]bool{}
		for _, v := range a.views {
			before[v.String()] = true
		}
		viewNames = a.setViews(state)
		if zonesOnly {
			a.fresh, a.changed = map[string]bool{}, map[mcs.ServiceKey]bool{}
			for _, n := range viewNames {
				a.fresh[n] = !before[n]
			}
			for _, k := range ch.Services {
				a.changed[k] = true
			}
		}
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

	shapeChanged, gatewayChanged := a.services(state, keys, all)
	// Services with mesh routes go last, once every cluster their routes
	// may name is known, and whenever a shape changed: a route follows
	// its backends being published or withdrawn.
	if shapeChanged || len(a.gwapi.routesDirty) > 0 {
		a.meshRoutes(state)
	}
	if gatewayChanged || all {
		a.gatewayRouting(state, gatewayChanged)
	}
	a.translateGateways(state, rebuilt, gwBackends, viewsChanged)

	a.plan.Updates = a.plan.ordered()
	if viewsChanged {
		a.plan.Views = viewNames
		if a.plan.Views == nil {
			a.plan.Views = []string{}
		}
	}
	a.plan.Rebuilt = rebuilt
	a.plan.Changed = !ch.Empty() || len(rebuilt) > 0 || len(gwBackends) > 0
	a.ledger.commit(a.plan.Updates, viewsChanged, viewNames)
}

// baseView is what every view of the Assembler shares: the network and
// the listeners' address.
func (a *Assembler) baseView() translate.View {
	return translate.View{Net: a.topo, ListenAddress: a.opts.ListenAddress}
}

// setViews makes the views of a new set of members and Gateways, forgets
// what views that are gone had published, and returns the views' names.
func (a *Assembler) setViews(state *mcs.State) []string {
	a.views = a.views[:0]
	members := state.ClusterIDs()
	a.zones.prune(members)
	for _, id := range members {
		for _, r := range Roles {
			a.views = append(a.views, translate.View{Cluster: id, Role: r, GatewayPort: a.opts.GatewayPort, TunnelPort: a.opts.TunnelPort, Net: a.topo, ListenAddress: a.opts.ListenAddress})
		}
		for _, z := range a.zones.byMember[id] {
			a.views = append(a.views, translate.View{Cluster: id, Role: z.Role, Zone: z.Zone, GatewayPort: a.opts.GatewayPort, TunnelPort: a.opts.TunnelPort, Net: a.topo, ListenAddress: a.opts.ListenAddress})
		}
	}
	a.views = append(a.views, a.gwapi.gatewayViews(state, a.baseView())...)
	a.gwapi.views = map[string]bool{}
	var names []string
	for _, v := range a.views {
		names = append(names, v.String())
		if v.Role == translate.RoleGatewayAPI {
			a.gwapi.views[v.String()] = true
		}
	}
	a.ledger.forget(names)
	return names
}

// services translates the services that changed for every member view,
// by change class (the classifier): a service whose shape (ports, type,
// affinity) did not change changed its endpoints only, and only its
// ClusterLoadAssignments are translated again. It reports whether a
// shape changed and whether the gateways' routing must be made again,
// and notes each service's change in the Plan.
func (a *Assembler) services(state *mcs.State, keys []mcs.ServiceKey, all bool) (shapeChanged, gatewayChanged bool) {
	endpointsOnly, shapeChanged := a.classes.endpointsOnly(state, keys, all)
	a.translateServices(state, keys, endpointsOnly)
	gatewayChanged, changes := a.classes.routing(state, keys)
	a.plan.Services = append(a.plan.Services, changes...)
	return shapeChanged, gatewayChanged
}

// meshRoutes translates again, for the client views, every service a
// mesh route attaches to (and those whose last route went away).
func (a *Assembler) meshRoutes(state *mcs.State) {
	parents := a.gwapi.meshParents()
	dirty := maps.Clone(a.gwapi.routesDirty)
	for k := range a.gwapi.routesDirty {
		if !slices.Contains(parents, k) {
			parents = append(parents, k) // its last route went away
		}
	}
	clear(a.gwapi.routesDirty)
	for _, key := range parents {
		for _, v := range a.views {
			if _, routes := dirty[key]; v.Role == translate.RoleClient && (routes || a.needs(v, key)) {
				a.translateService(v, key, state.Services.Get(key))
			}
		}
	}
}

// gatewayRouting makes every east-west gateway's listener and route
// configuration, and its tunnel listener and secrets, again (a service's
// TCP ports, or the members exporting them, came or went), under the zero
// key. Unless changed (the routing changed), a Flush that only makes
// zone views makes it for those alone.
func (a *Assembler) gatewayRouting(state *mcs.State, changed bool) {
	services := a.classes.routed(state)
	for _, v := range a.views {
		view := v.String()
		if v.Role != translate.RoleGateway || !changed && a.fresh != nil && !a.fresh[view] {
			continue
		}
		r := translate.Gateway(services, v, func(c string) bool { return a.ledger.hasCluster(view, c) })
		a.ledger.record(a.plan, view, mcs.ServiceKey{}, r, "")
	}
}

// translateGateways translates the Gateways of rebuilt members (all of
// them when the views changed) into their views: each backend service's
// clusters under that service, listeners, routes and certificates under
// the zero key. For members in backends only those services' clusters
// are translated again.
func (a *Assembler) translateGateways(state *mcs.State, rebuilt []string, backends map[string]map[mcs.ServiceKey]bool, all bool) {
	members := map[string]bool{}
	for _, m := range rebuilt {
		members[m] = true
	}
	if all {
		for m := range a.gwapi.results {
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
		for _, gw := range a.gwapi.results[m].Gateways {
			v := a.gwapi.view(id, gw, a.baseView())
			view := v.String()
			var only func(mcs.ServiceKey) bool
			if !full {
				only = func(k mcs.ServiceKey) bool { return backends[m][k] }
			}
			parts := translate.GatewayBackends(gw, v, be, only)
			for _, k := range slices.SortedFunc(maps.Keys(parts), mcs.ServiceKey.Compare) {
				a.ledger.record(a.plan, view, k, parts[k], "")
			}
			if !full {
				continue
			}
			for _, k := range a.ledger.keys(view) {
				if _, ok := parts[k]; !ok && k != (mcs.ServiceKey{}) {
					a.ledger.record(a.plan, view, k, translate.Result{}, "") // no longer a backend
				}
			}
			a.ledger.record(a.plan, view, mcs.ServiceKey{}, translate.GatewayListeners(gw, v, be, func(c string) bool { return a.ledger.hasCluster(view, c) }), "")
		}
	}
}

// parallelTranslate is the number of (service, view) translations from
// which translateServices uses every core: a start-up with 10,000
// services makes 60,000 of them, a change of one service a handful.
const parallelTranslate = 256

// translateServices translates the services for every member view and
// records the results, in the order of keys then views. Translations are
// pure and run on every core when there are many; recording (which
// updates what each view has published) stays on this goroutine.
func (a *Assembler) translateServices(state *mcs.State, keys []mcs.ServiceKey, endpointsOnly map[mcs.ServiceKey]bool) {
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
			if v.Role != translate.RoleGatewayAPI && a.needs(v, key) {
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
	shareClusters(len(jobs), a.opts.Translate == nil, func(i int) (translate.View, *translate.Result) { return jobs[i].v, &jobs[i].r })
	shareAssignments(len(jobs), func(i int) *translate.Result { return &jobs[i].r })
	for _, j := range jobs {
		only := ""
		if j.endpoints {
			only = resourcev3.EndpointType
		}
		a.ledger.record(a.plan, j.v.String(), j.key, j.r, only)
	}
}

// needs reports whether a view's translation of a service may have
// changed in this Flush (fresh: see Assembler.fresh).
func (a *Assembler) needs(v translate.View, key mcs.ServiceKey) bool {
	return a.fresh == nil || a.fresh[v.String()] || a.changed[key]
}

// translateService translates one service for one view and records what to
// set and delete. A resource that fails validation keeps its previous
// version published.
func (a *Assembler) translateService(v translate.View, key mcs.ServiceKey, st *mcs.ServiceState) {
	a.ledger.record(a.plan, v.String(), key, a.translate(st, v, a.serviceOptions(v, st)), "")
}

// serviceOptions gives a service's translation its mesh routes in the
// view's member cluster, and what the view serves.
func (a *Assembler) serviceOptions(v translate.View, st *mcs.ServiceState) translate.ServiceOptions {
	if v.Role != translate.RoleClient || st == nil {
		return translate.ServiceOptions{}
	}
	state := a.store.State()
	member := ""
	for _, c := range state.Clusters {
		if c.ID == v.Cluster {
			member = c.Member
		}
	}
	view := v.String()
	return translate.ServiceOptions{
		Routes: func(port int32) []*gatewayapi.RouteRule {
			return gatewayapi.MeshRules(a.gwapi.results[member].Mesh[st.Key], port)
		},
		Published: func(c string) bool { return a.ledger.hasCluster(view, c) },
		Import: func(k mcs.ServiceKey) *mcs.Import {
			if s := state.Services.Get(k); s != nil {
				return s.Import
			}
			return nil
		},
	}
}

// maxDistinctAssignments bounds the distinct assignments of one name
// that shareAssignments compares a new one with (each exporting member's
// views differ: its own endpoints come first).
const maxDistinctAssignments = 64

// shareAssignments makes views share one ClusterLoadAssignment message
// per name when their translations are the same (translate.SameAssignment):
// every member that imports a service without exporting it, on the
// exporters' network, sees the same endpoints in the same order. The
// cache then marshals it once for all of them (issue 29: at 250 members a
// change's assignments were marshalled once per importing view).
func shareAssignments(n int, at func(i int) *translate.Result) {
	distinct := map[string][]*endpointv3.ClusterLoadAssignment{}
	for i := range n {
		r := at(i)
		for j, res := range r.Resources {
			cla, ok := res.Message.(*endpointv3.ClusterLoadAssignment)
			if res.Type != resourcev3.EndpointType || !ok {
				continue
			}
			shared := false
			for _, c := range distinct[res.Name] {
				if translate.SameAssignment(c, cla) {
					r.Resources[j].Message, shared = c, true
					break
				}
			}
			if !shared && len(distinct[res.Name]) < maxDistinctAssignments {
				distinct[res.Name] = append(distinct[res.Name], cla)
			}
		}
	}
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
