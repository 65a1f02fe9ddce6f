package controlplane

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/eastwest-dev/eastwest/internal/parallel"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/mcs/source"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// Default batching of source events. The first event after a quiet
// holdoff is published at once (leading edge: a lone change pays no
// holdoff); events that follow within the holdoff are gathered until it
// has been quiet that long (trailing edge), so a burst (a file saved, a
// rollout's EndpointSlice updates) becomes one more merge and push. The
// maximum delay bounds what a steady stream of events can postpone a
// push by.
const (
	DefaultHoldoff  = 5 * time.Millisecond
	DefaultMaxDelay = 200 * time.Millisecond
	// DefaultSyncTimeout is how long the first publish waits for an
	// unreachable member cluster.
	DefaultSyncTimeout = time.Minute
	// DefaultLivenessTimeout is how long a publish may be owed before
	// the Writer reports itself unhealthy. A publish takes milliseconds
	// (the first one of 10,000 services about a second): minutes of owing
	// one means the Writer is stuck, and a restart is the cure.
	DefaultLivenessTimeout = 2 * time.Minute
)

// roles are the views every member cluster gets.
var roles = []translate.Role{translate.RoleClient, translate.RoleGateway}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Holdoff is the quiet time that ends a batch; zero publishes every
	// source batch as it comes (no coalescing).
	Holdoff time.Duration
	// MaxDelay bounds how long a batch may wait while events keep coming.
	MaxDelay time.Duration
	// SyncTimeout bounds how long the first publish waits for every
	// source's initial sync: nothing is served before (a partial state
	// would drain the clusters not yet read); after it, the sources that
	// have synced are served and the others join when they sync.
	SyncTimeout time.Duration
	GatewayPort uint32
	Store       mcs.Options
	// LivenessTimeout bounds how long a publish may be owed (events
	// received, not yet published) before Healthy fails.
	LivenessTimeout time.Duration
}

// Writer is the single writer: it owns the Store, batches source events,
// translates the services a batch touched for every view and publishes
// them to the cache. Everything else reads its Snapshots.
type Writer struct {
	opts    WriterOptions
	log     *slog.Logger
	metrics *metrics.Metrics
	store   *mcs.Store
	cache   *cache.Cache
	in      chan batch

	mu      sync.Mutex
	sources map[string]*sourceState

	// Owned by Run's goroutine.
	views     []translate.View
	published map[string]map[mcs.ServiceKey][]ref // view -> service -> published resources
	clusters  map[string]map[string]bool          // view -> published cluster names
	invalid   map[string]map[mcs.ServiceKey][]translate.Invalid
	gwInvalid map[string][]translate.Invalid
	gwSig     map[mcs.ServiceKey]string
	imported  map[mcs.ServiceKey]bool
	gen       uint64

	snap  atomic.Pointer[Snapshot]
	ready atomic.Bool
	// next is closed when the next Snapshot is stored (see Published).
	next atomic.Pointer[chan struct{}]
	// owedSince is when the oldest event not yet published arrived (Unix
	// nanoseconds; 0: nothing owed), once the first publish is due.
	owedSince atomic.Int64
	now       func() time.Time

	// translate is translate.ServiceWith; tests replace it to make
	// resources fail validation.
	translate func(*mcs.ServiceState, translate.View, translate.ServiceOptions) translate.Result

	// gw holds every member's Gateway API objects; gwResults what
	// gateway.Build made of them, by member; routesDirty the services
	// whose mesh routes changed since the last publish.
	gw          *gateway.Store
	gwResults   map[string]gateway.Result
	gwViews     map[string]bool                      // published gateway-api view names
	gwRefSig    map[string]map[mcs.ServiceKey]string // member -> referenced service -> refSignature
	routesDirty map[mcs.ServiceKey]bool
	// onStatus, when set, is told the Gateway API statuses of members
	// whose results were built again.
	onStatus func(member string, statuses []gateway.Status)

	// onPublish, when set, is told each published state and what changed
	// (the write-back to member clusters).
	onPublish func(state *mcs.State, services []mcs.ServiceKey, clusters bool)
}

// OnPublish sets a function told about every published state and the
// services that changed; it must not block. Set it before Run.
func (w *Writer) OnPublish(fn func(state *mcs.State, services []mcs.ServiceKey, clusters bool)) {
	w.onPublish = fn
}

// OnStatus sets a function told the Gateway API statuses of every member
// whose objects (or the services they reference) changed; it must not
// block. Set it before Run.
func (w *Writer) OnStatus(fn func(member string, statuses []gateway.Status)) { w.onStatus = fn }

type ref struct{ typ, name string }

type batch struct {
	source   string
	events   []mcs.Event
	problems []source.Problem
}

type sourceState struct {
	synced   bool
	problems []source.Problem
}

// Snapshot is what the Writer last published, for the debug endpoint.
type Snapshot struct {
	Generation  uint64
	PublishedAt time.Time
	State       *mcs.State
	Views       []translate.View
	// Invalid lists, per view, the resources that failed validation.
	Invalid  map[string][]translate.Invalid
	Problems []source.Problem
	// Sources maps each source to whether it delivered its initial state.
	Sources map[string]bool
	// Gateway holds, per member, what the Gateway API build made: the
	// statuses eastwest owns and the services each route names.
	Gateway map[string]GatewayAPI
}

// GatewayAPI is one member's Gateway API result, as the debug endpoint
// shows it.
type GatewayAPI struct {
	Statuses  []gateway.Status
	RouteRefs map[gateway.RouteKey][]mcs.ServiceKey
}

// NewWriter returns a Writer publishing to c.
func NewWriter(opts WriterOptions, c *cache.Cache, m *metrics.Metrics, log *slog.Logger) *Writer {
	opts.Holdoff = max(0, opts.Holdoff)
	if opts.MaxDelay < opts.Holdoff || opts.MaxDelay <= 0 {
		opts.MaxDelay = max(DefaultMaxDelay, opts.Holdoff)
	}
	if opts.GatewayPort == 0 {
		opts.GatewayPort = translate.DefaultGatewayPort
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.LivenessTimeout <= 0 {
		opts.LivenessTimeout = DefaultLivenessTimeout
	}
	w := &Writer{
		opts: opts, log: log, metrics: m, cache: c, now: time.Now,
		store:     mcs.NewStore(opts.Store),
		in:        make(chan batch, 64),
		sources:   map[string]*sourceState{},
		published: map[string]map[mcs.ServiceKey][]ref{},
		clusters:  map[string]map[string]bool{},
		invalid:   map[string]map[mcs.ServiceKey][]translate.Invalid{},
		gwInvalid: map[string][]translate.Invalid{},
		gwSig:     map[mcs.ServiceKey]string{},
		imported:  map[mcs.ServiceKey]bool{},
		translate: translate.ServiceWith,
		gw:        gateway.NewStore(),
		gwResults: map[string]gateway.Result{},
		gwViews:   map[string]bool{},
		gwRefSig:  map[string]map[mcs.ServiceKey]string{},

		routesDirty: map[mcs.ServiceKey]bool{},
	}
	w.snap.Store(&Snapshot{State: &mcs.State{}})
	next := make(chan struct{})
	w.next.Store(&next)
	return w
}

// AddSource declares a source: the Writer is not ready until every
// declared source has delivered its initial state (or SyncTimeout).
func (w *Writer) AddSource(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sources[name] == nil {
		w.sources[name] = &sourceState{}
	}
}

// RemoveSource forgets a source (a member cluster left the ClusterSet).
func (w *Writer) RemoveSource(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.sources, name)
}

// synced reports whether every declared source delivered its initial state.
func (w *Writer) synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.sources {
		if !s.synced {
			return false
		}
	}
	return true
}

// Sink returns the function a source calls with its events and current
// problems.
func (w *Writer) Sink(name string) func([]mcs.Event, []source.Problem) {
	return func(evs []mcs.Event, probs []source.Problem) {
		w.in <- batch{source: name, events: evs, problems: probs}
	}
}

// Ready reports whether every source has synced and the result is
// published.
func (w *Writer) Ready() bool { return w.ready.Load() }

// Snapshot returns what was last published.
func (w *Writer) Snapshot() *Snapshot { return w.snap.Load() }

// Published returns a channel closed when the next Snapshot is stored:
// take it, read Snapshot, and wait on it while what you wait for is not
// there yet (tests wait on this signal, never on sleeps).
func (w *Writer) Published() <-chan struct{} { return *w.next.Load() }

// Healthy fails when the Writer has owed a publish for longer than
// LivenessTimeout: events arrived (or the first publish fell due) and
// nothing was published since. It is what /healthz reports, so that a
// stuck control plane is restarted rather than left serving ever older
// configuration with a green light.
func (w *Writer) Healthy() error {
	since := w.owedSince.Load()
	if since == 0 {
		return nil
	}
	if owed := w.now().Sub(time.Unix(0, since)); owed > w.opts.LivenessTimeout {
		return fmt.Errorf("a publish has been owed for %v (more than %v): the writer is stuck", owed.Truncate(time.Second), w.opts.LivenessTimeout)
	}
	return nil
}

// owe notes that a publish is due, unless one already is.
func (w *Writer) owe() { w.owedSince.CompareAndSwap(0, w.now().UnixNano()) }

// Run batches events and publishes until ctx ends. Nothing is published
// until every source has synced or SyncTimeout has passed.
func (w *Writer) Run(ctx context.Context) {
	start := time.Now()
	initialized := false
	holdoff := time.NewTimer(time.Hour)
	holdoff.Stop()
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	waiting := time.NewTicker(100 * time.Millisecond)
	defer waiting.Stop()
	pending := false
	var lastEvent time.Time
	publish := func() {
		if !initialized {
			if !w.synced() && time.Since(start) < w.opts.SyncTimeout {
				return // keep the batch until every source has synced
			}
			initialized = true
			waiting.Stop()
			if !w.synced() {
				w.log.Warn("serving without the sources that did not sync in time", "syncTimeout", w.opts.SyncTimeout)
			}
		}
		holdoff.Stop()
		deadline.Stop()
		pending = false
		w.owe()
		w.publish()
		w.owedSince.Store(0)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-w.in:
			if initialized {
				w.owe()
			}
			w.receive(b)
			now := w.now()
			quiet := now.Sub(lastEvent) >= w.opts.Holdoff
			lastEvent = now
			if initialized && !pending && quiet {
				// Leading edge: nothing came for a holdoff, so this is
				// not (yet) a burst; publish it at once.
				publish()
				continue
			}
			if !pending {
				pending = true
				deadline.Reset(w.opts.MaxDelay)
			}
			holdoff.Reset(w.opts.Holdoff)
		case <-holdoff.C:
			publish()
		case <-deadline.C:
			publish()
		case <-waiting.C:
			if !initialized {
				publish()
			}
		}
	}
}

func (w *Writer) receive(b batch) {
	for _, ev := range b.events {
		if err := apply(ev, w.store, w.gw); err != nil {
			w.log.Error("cannot apply source event", "source", b.source, "member", ev.Member, "op", ev.Op, "err", err)
		}
	}
	w.mu.Lock()
	s := w.sources[b.source]
	if s == nil {
		s = &sourceState{}
		w.sources[b.source] = s
	}
	s.synced, s.problems = true, b.problems
	w.mu.Unlock()
}

// publish merges what the batch touched, translates it for every view and
// applies it to the cache: new and changed resources cluster first, route
// last (make before break), then deletions in the reverse order (break
// after make).
func (w *Writer) publish() {
	start := time.Now()
	ch := w.store.Flush()
	mergeTook := time.Since(start)
	w.metrics.Merged(mergeTook)
	state := w.store.Snapshot()
	start = time.Now()

	// Gateway API: build again the members whose objects changed, or
	// whose routes reference a service that changed.
	rebuilt, gwBackends := w.buildGateways(state, ch)

	keys := ch.Services
	viewsChanged := ch.Clusters || len(rebuilt) > 0 && w.gatewayViewsChanged(state)
	var viewNames []string
	if viewsChanged {
		w.views = w.views[:0]
		for _, id := range state.ClusterIDs() {
			for _, r := range roles {
				w.views = append(w.views, translate.View{Cluster: id, Role: r, GatewayPort: w.opts.GatewayPort})
			}
		}
		w.views = append(w.views, w.gatewayViews(state)...)
		w.gwViews = map[string]bool{}
		for _, v := range w.views {
			viewNames = append(viewNames, v.String())
			if v.Role == translate.RoleGatewayAPI {
				w.gwViews[v.String()] = true
			}
		}
		for name := range w.published {
			if !slices.Contains(viewNames, name) {
				delete(w.published, name)
				delete(w.clusters, name)
				delete(w.invalid, name)
				delete(w.gwInvalid, name)
			}
		}
	}
	if ch.Clusters {
		// Every service may look different from a new view; and the
		// services that went away with a member must go too.
		keys = state.ServiceKeys()
		for _, k := range ch.Services {
			if state.Services.Get(k) == nil {
				keys = append(keys, k)
			}
		}
		w.metrics.Clusters(state.Clusters)
	}

	sets := map[string]map[string][]cache.Resource{} // type -> view -> resources
	dels := map[string]map[string][]string{}         // type -> view -> names
	gatewayChanged := ch.Clusters
	w.translateServices(state, keys, sets, dels)
	for _, key := range keys {
		st := state.Services.Get(key)
		sig := gatewaySignature(st)
		if w.gwSig[key] != sig {
			gatewayChanged = true
			if sig == "" {
				delete(w.gwSig, key)
			} else {
				w.gwSig[key] = sig
			}
		}
		has := st != nil && st.Import != nil
		delta := 0
		switch {
		case has && !w.imported[key]:
			delta, w.imported[key] = 1, true
		case !has && w.imported[key]:
			delta = -1
			delete(w.imported, key)
		}
		w.metrics.Service(key, st, delta)
	}
	// Services with mesh routes go last, once every cluster their routes
	// may name is known, and whenever anything changed: a route follows
	// its backends being published or withdrawn.
	if len(keys) > 0 || len(w.routesDirty) > 0 {
		parents := w.meshParents()
		for k := range w.routesDirty {
			if !slices.Contains(parents, k) {
				parents = append(parents, k) // its last route went away
			}
		}
		clear(w.routesDirty)
		for _, key := range parents {
			for _, v := range w.views {
				if v.Role == translate.RoleClient {
					w.translateService(v, key, state.Services.Get(key), sets, dels)
				}
			}
		}
	}
	if gatewayChanged {
		var services []*mcs.ServiceState
		for key := range w.gwSig {
			services = append(services, state.Services.Get(key))
		}
		for _, v := range w.views {
			if v.Role != translate.RoleGateway {
				continue
			}
			r := translate.Gateway(services, v, func(c string) bool { return w.clusters[v.String()][c] })
			for _, res := range r.Resources {
				add(sets, res.Type, v.String(), cache.Resource{Name: res.Name, Message: res.Message})
			}
			w.gwInvalid[v.String()] = r.Invalid
		}
	}
	w.translateGateways(state, rebuilt, gwBackends, viewsChanged, sets, dels)

	var updates []cache.Update
	for _, typ := range translate.TypeOrder() {
		for _, view := range slices.Sorted(maps.Keys(sets[typ])) {
			updates = append(updates, cache.Update{View: view, Type: typ, Set: sets[typ][view]})
		}
	}
	for _, typ := range slices.Backward(translate.TypeOrder()) {
		for _, view := range slices.Sorted(maps.Keys(dels[typ])) {
			updates = append(updates, cache.Update{View: view, Type: typ, Delete: dels[typ][view]})
		}
	}
	if err := w.cache.Apply(updates); err != nil {
		w.log.Error("cannot publish resources", "err", err)
	}
	if viewsChanged {
		// After the resources, so a new view's clients get them at once.
		w.cache.SetViews(viewNames)
	}
	w.metrics.Translated(time.Since(start))
	if w.gen == 0 {
		w.log.Info("first publish", "services", state.Services.Len(), "views", len(w.views),
			"merge", mergeTook.Round(time.Millisecond), "translate", time.Since(start).Round(time.Millisecond))
	}
	w.snapshot(state, !ch.Empty() || len(rebuilt) > 0 || len(gwBackends) > 0 || w.gen == 0)
	if w.onPublish != nil && (!ch.Empty() || w.gen == 1) {
		w.onPublish(state, ch.Services, ch.Clusters || w.gen == 1)
	}
	for _, m := range rebuilt {
		w.metrics.GatewayStatuses(m, w.gwResults[m].Statuses)
		if w.onStatus != nil {
			w.onStatus(m, w.gwResults[m].Statuses)
		}
	}
}

// buildGateways runs gateway.Build for the members that need it and
// returns them: those whose Gateway API objects changed, and those whose
// routes name a service whose shape (import, ports, affinity) changed. A
// referenced service whose endpoints alone changed needs no build: it is
// returned in backends, by member, and only its clusters are translated
// again. A member's mesh parents, old and new, get their client routes
// translated again.
func (w *Writer) buildGateways(state *mcs.State, ch mcs.Changes) (rebuilt []string, backends map[string]map[mcs.ServiceKey]bool) {
	dirty := map[string]bool{}
	for _, m := range w.gw.TakeDirty() {
		dirty[m] = true
	}
	backends = map[string]map[mcs.ServiceKey]bool{}
	for m, r := range w.gwResults {
		if ch.Clusters {
			dirty[m] = true
			continue
		}
		for _, k := range ch.Touched {
			if !r.Refs[k] || dirty[m] {
				continue
			}
			if w.refSignature(state, m, k) != w.gwRefSig[m][k] {
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
		old := w.gwResults[m]
		for k := range old.Mesh {
			w.routesDirty[k] = true
		}
		in := w.gw.Inputs(m)
		if in == nil {
			delete(w.gwResults, m)
			delete(w.gwRefSig, m)
			rebuilt = append(rebuilt, m)
			continue
		}
		r := gateway.Build(in, lookup{state: state, store: w.store, member: m})
		for k := range r.Mesh {
			w.routesDirty[k] = true
		}
		w.gwResults[m] = r
		sigs := map[mcs.ServiceKey]string{}
		for k := range r.Refs {
			sigs[k] = w.refSignature(state, m, k)
		}
		w.gwRefSig[m] = sigs
		rebuilt = append(rebuilt, m)
	}
	return rebuilt, backends
}

// refSignature is what gateway.Build reads of a service for a member: the
// import's ports and affinity, and the member's own Service's. Endpoints
// are not in it: they change the backends' clusters, not the routes.
func (w *Writer) refSignature(state *mcs.State, member string, k mcs.ServiceKey) string {
	var b strings.Builder
	if st := state.Services.Get(k); st != nil && st.Import != nil {
		fmt.Fprintf(&b, "import %s %s:", st.Import.Type, st.Import.SessionAffinity)
		for _, p := range st.Import.Ports {
			fmt.Fprintf(&b, " %s/%s/%d", p.Name, p.Protocol, p.Port)
		}
	}
	if svc, _ := w.store.Local(member, k); svc != nil {
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
func (w *Writer) gatewayViews(state *mcs.State) []translate.View {
	var out []translate.View
	for _, m := range slices.Sorted(maps.Keys(w.gwResults)) {
		id := clusterOf(state, m)
		if id == "" {
			continue
		}
		for _, gw := range w.gwResults[m].Gateways {
			out = append(out, translate.View{Cluster: id, Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key)})
		}
	}
	return out
}

func (w *Writer) gatewayViewsChanged(state *mcs.State) bool {
	now := w.gatewayViews(state)
	if len(now) != len(w.gwViews) {
		return true
	}
	for _, v := range now {
		if !w.gwViews[v.String()] {
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
func (w *Writer) translateGateways(state *mcs.State, rebuilt []string, backends map[string]map[mcs.ServiceKey]bool, all bool, sets map[string]map[string][]cache.Resource, dels map[string]map[string][]string) {
	members := map[string]bool{}
	for _, m := range rebuilt {
		members[m] = true
	}
	if all {
		for m := range w.gwResults {
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
		be := translate.Backends{State: state, Local: func(k mcs.ServiceKey) (*mcs.Service, []*mcs.Slice) { return w.store.Local(m, k) }}
		full := members[m]
		for _, gw := range w.gwResults[m].Gateways {
			v := translate.View{Cluster: id, Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key)}
			view := v.String()
			var only func(mcs.ServiceKey) bool
			if !full {
				only = func(k mcs.ServiceKey) bool { return backends[m][k] }
			}
			parts := translate.GatewayBackends(gw, v, be, only)
			for _, k := range slices.SortedFunc(maps.Keys(parts), mcs.ServiceKey.Compare) {
				w.record(view, k, parts[k], sets, dels)
			}
			if !full {
				continue
			}
			for k := range w.published[view] {
				if _, ok := parts[k]; !ok && k != (mcs.ServiceKey{}) {
					w.record(view, k, translate.Result{}, sets, dels) // no longer a backend
				}
			}
			w.record(view, mcs.ServiceKey{}, translate.GatewayListeners(gw, v, be, func(c string) bool { return w.clusters[view][c] }), sets, dels)
		}
	}
}

// meshParents returns every service some member's mesh route attaches to.
func (w *Writer) meshParents() []mcs.ServiceKey {
	seen := map[mcs.ServiceKey]bool{}
	for _, r := range w.gwResults {
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
func (w *Writer) translateServices(state *mcs.State, keys []mcs.ServiceKey, sets map[string]map[string][]cache.Resource, dels map[string]map[string][]string) {
	type job struct {
		v   translate.View
		key mcs.ServiceKey
		st  *mcs.ServiceState
		r   translate.Result
	}
	var jobs []job
	for _, key := range keys {
		st := state.Services.Get(key)
		for _, v := range w.views {
			if v.Role != translate.RoleGatewayAPI {
				jobs = append(jobs, job{v: v, key: key, st: st})
			}
		}
	}
	parallel.For(len(jobs), parallelTranslate, func(i int) {
		j := &jobs[i]
		j.r = w.translate(j.st, j.v, w.serviceOptions(j.v, j.st))
	})
	for _, j := range jobs {
		w.record(j.v.String(), j.key, j.r, sets, dels)
	}
}

// translateService translates one service for one view and records what to
// set and delete. A resource that fails validation keeps its previous
// version published.
func (w *Writer) translateService(v translate.View, key mcs.ServiceKey, st *mcs.ServiceState, sets map[string]map[string][]cache.Resource, dels map[string]map[string][]string) {
	w.record(v.String(), key, w.translate(st, v, w.serviceOptions(v, st)), sets, dels)
}

// record sets what a translation made in a view under a key (a service;
// the zero key for a Gateway's view), and deletes what the key had and no
// longer has. A resource that fails validation keeps its previous version.
func (w *Writer) record(view string, key mcs.ServiceKey, r translate.Result, sets map[string]map[string][]cache.Resource, dels map[string]map[string][]string) {
	keep := map[ref]bool{}
	var refs []ref
	for _, res := range r.Resources {
		rf := ref{res.Type, res.Name}
		keep[rf] = true
		refs = append(refs, rf)
		add(sets, res.Type, view, cache.Resource{Name: res.Name, Message: res.Message})
	}
	for _, inv := range r.Invalid {
		keep[ref{inv.Type, inv.Name}] = true
	}
	if w.published[view] == nil {
		w.published[view] = map[mcs.ServiceKey][]ref{}
		w.clusters[view] = map[string]bool{}
		w.invalid[view] = map[mcs.ServiceKey][]translate.Invalid{}
	}
	for _, old := range w.published[view][key] {
		switch {
		case !keep[old]:
			if dels[old.typ] == nil {
				dels[old.typ] = map[string][]string{}
			}
			dels[old.typ][view] = append(dels[old.typ][view], old.name)
			if old.typ == resourcev3.ClusterType {
				delete(w.clusters[view], old.name)
			}
		case !slices.Contains(refs, old):
			refs = append(refs, old) // invalid now: its previous version stays
		}
	}
	for _, rf := range refs {
		if rf.typ == resourcev3.ClusterType {
			w.clusters[view][rf.name] = true
		}
	}
	if len(refs) == 0 {
		delete(w.published[view], key)
	} else {
		w.published[view][key] = refs
	}
	if len(r.Invalid) == 0 {
		delete(w.invalid[view], key)
	} else {
		w.invalid[view][key] = r.Invalid
		for _, inv := range r.Invalid {
			w.log.Warn("resource failed validation and is not published", "view", view, "resource", inv.Error())
		}
	}
}

// serviceOptions gives a service's translation its mesh routes in the
// view's member cluster, and what the view serves.
func (w *Writer) serviceOptions(v translate.View, st *mcs.ServiceState) translate.ServiceOptions {
	if v.Role != translate.RoleClient || st == nil {
		return translate.ServiceOptions{}
	}
	state := w.store.Snapshot()
	member := ""
	for _, c := range state.Clusters {
		if c.ID == v.Cluster {
			member = c.Member
		}
	}
	view := v.String()
	return translate.ServiceOptions{
		Routes: func(port int32) []*gateway.RouteRule {
			return gateway.MeshRules(w.gwResults[member].Mesh[st.Key], port)
		},
		Published: func(c string) bool { return w.clusters[view][c] },
		Import: func(k mcs.ServiceKey) *mcs.Import {
			if s := state.Services.Get(k); s != nil {
				return s.Import
			}
			return nil
		},
	}
}

func add(sets map[string]map[string][]cache.Resource, typ, view string, r cache.Resource) {
	if sets[typ] == nil {
		sets[typ] = map[string][]cache.Resource{}
	}
	sets[typ][view] = append(sets[typ][view], r)
}

// gatewaySignature changes when a service's gateway routes would: its
// TCP ports come or go.
func gatewaySignature(st *mcs.ServiceState) string {
	if st == nil || st.Import == nil {
		return ""
	}
	var b strings.Builder
	for _, p := range st.Import.Ports {
		if p.Protocol == "TCP" {
			b.WriteString(translate.HostPort(st.Key, p.Port))
			b.WriteByte(',')
		}
	}
	return b.String()
}

func (w *Writer) snapshot(state *mcs.State, changed bool) {
	if changed {
		w.gen++
	}
	invalid := map[string][]translate.Invalid{}
	counts := map[string]int{}
	for view, bySvc := range w.invalid {
		for _, list := range bySvc {
			invalid[view] = append(invalid[view], list...)
		}
	}
	for view, list := range w.gwInvalid {
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
		for _, inv := range list {
			counts[inv.Type]++
		}
	}
	for _, typ := range translate.TypeOrder() {
		w.metrics.Rejected(typ, counts[typ])
	}
	w.mu.Lock()
	var probs []source.Problem
	srcs := map[string]bool{}
	for name, s := range w.sources {
		probs = append(probs, s.problems...)
		srcs[name] = s.synced
	}
	w.mu.Unlock()
	w.metrics.SourceProblems(len(probs))
	gws := map[string]GatewayAPI{}
	for m, r := range w.gwResults {
		gws[m] = GatewayAPI{Statuses: r.Statuses, RouteRefs: r.RouteRefs}
	}
	defer func() {
		next := make(chan struct{})
		close(*w.next.Swap(&next))
	}()
	w.snap.Store(&Snapshot{
		Gateway:     gws,
		Generation:  w.gen,
		PublishedAt: time.Now(),
		State:       state,
		Views:       slices.Clone(w.views),
		Invalid:     invalid,
		Problems:    probs,
		Sources:     srcs,
	})
	// Ready once published: Run publishes only after every source
	// synced, or after the sync timeout let the others go.
	w.ready.Store(true)
}
