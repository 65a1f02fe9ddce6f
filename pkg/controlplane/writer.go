package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eastwest-dev/eastwest/internal/ratelog"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/trust"
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
	// PublishRest is how many times as long as a costly publish took
	// (DefaultRestAfter or more: WriterOptions.RestAfter) the Writer rests
	// before the next one, so that publishing takes at most a quarter of
	// a core however fast the inputs change. A member whose network
	// property or gateway addresses flap twice a second made every view
	// be translated again twice a second (73% of a core at 1,500
	// services: the trust-boundaries issue); now such a flap costs at
	// most a quarter, and delays other changes by at most MaxRest. Cheap
	// publishes (an endpoint change: well under a millisecond) never
	// rest.
	PublishRest      = 3
	DefaultRestAfter = 10 * time.Millisecond
	MaxRest          = 2 * time.Second
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Holdoff is the quiet time that ends a batch; zero publishes every
	// source batch as it comes (no coalescing).
	Holdoff time.Duration
	// MaxDelay bounds how long a batch may wait while events keep coming.
	MaxDelay time.Duration
	// RestAfter is the cost from which a publish is followed by a rest
	// (PublishRest; 0: DefaultRestAfter).
	RestAfter time.Duration
	// SyncTimeout bounds how long the first publish waits for every
	// source's initial sync: nothing is served before (a partial state
	// would drain the clusters not yet read); after it, the sources that
	// have synced are served and the others join when they sync.
	SyncTimeout time.Duration
	GatewayPort uint32
	// ListenAddress is the address the Envoys' listeners bind ("": every
	// address; xds serve --listen-address).
	ListenAddress string
	// TunnelPort is the east-west gateways' tunnel listener port (0: 15443).
	TunnelPort uint32
	// TrustDomain is the trust domain of the gateways' tunnel identities
	// (set from the xDS one).
	TrustDomain string
	// Anchors are the operator's trust anchors (nil: none).
	Anchors *trust.Anchors
	Store   mcs.Options
	// Translate replaces translate.ServiceWith (assemble.Options.Translate:
	// tests make resources fail validation with it).
	Translate func(*mcs.ServiceState, translate.View, translate.ServiceOptions) translate.Result
	// LivenessTimeout bounds how long a publish may be owed (events
	// received, not yet published) before Healthy fails.
	LivenessTimeout time.Duration
}

// Writer is the single writer: it batches source events, has its
// Assembler (which holds the stores) turn each batch into a Plan, and
// publishes the Plan to the cache. Everything else reads its Snapshots.
type Writer struct {
	opts WriterOptions
	log  *slog.Logger
	// publishLog logs publishes at most 5 per second.
	publishLog *ratelog.Logger
	metrics    *metrics.Metrics
	cache      *cache.Cache
	in         chan batch
	// missing is signalled when a client waits for a view that does not
	// exist: a zone view is made when first asked for.
	missing chan struct{}
	// refused are the zone views refused over the bound, logged once.
	refused map[string]bool

	mu      sync.Mutex
	sources map[string]*sourceState

	// Owned by Run's goroutine: the assembler and the generation.
	asm *assemble.Assembler
	gen uint64
	// problems is what was last logged of the members' gateway problems,
	// so that each warning comes once per change.
	problems map[string]string

	snap  atomic.Pointer[Snapshot]
	ready atomic.Bool
	// next is closed when the next Snapshot is stored (see Published).
	next atomic.Pointer[chan struct{}]
	// owedSince is when the oldest event not yet published arrived (Unix
	// nanoseconds; 0: nothing owed), once the first publish is due.
	owedSince atomic.Int64
	now       func() time.Time

	// onGatewayAPI, when set, is told the Gateway API results (statuses,
	// Gateways to deploy) of members whose results were built again.
	onGatewayAPI func(member string, res gatewayapi.Result)

	// onPublish, when set, is told each published state and what changed
	// (the write-back to member clusters).
	onPublish func(state *mcs.State, services []mcs.ServiceKey, clusters bool)
}

// OnPublish sets a function told about every published state and the
// services that changed; it must not block. Set it before Run.
func (w *Writer) OnPublish(fn func(state *mcs.State, services []mcs.ServiceKey, clusters bool)) {
	w.onPublish = fn
}

// OnGatewayAPI sets a function told the Gateway API result (statuses,
// Gateways to deploy) of every member whose objects (or the services they
// reference) changed; it must not block. Set it before Run.
func (w *Writer) OnGatewayAPI(fn func(member string, res gatewayapi.Result)) { w.onGatewayAPI = fn }

type batch struct {
	source   string
	events   []event.Event
	problems []source.Problem
	// anchors, when set, are new trust anchors (and the batch is
	// nothing else).
	anchors *trust.Anchors
	// pins, when set, are the relay ledger (and the batch has no events).
	pins mcs.RelayPins
}

// RelayLedgerSource is the source name of the relay ledger: the Writer
// does not publish before it has read it (or SyncTimeout), so that a
// restarted replica starts from the persisted relay ports.
const RelayLedgerSource = "relay-ledger"

// SetRelayPins hands the writer the relay ledger as last read.
func (w *Writer) SetRelayPins(p mcs.RelayPins) {
	if p == nil {
		p = mcs.RelayPins{}
	}
	w.in <- batch{source: RelayLedgerSource, pins: p}
}

// SetAnchors hands the writer new trust anchors; they are published like
// a batch of events.
func (w *Writer) SetAnchors(a *trust.Anchors) { w.in <- batch{anchors: a} }

type sourceState struct {
	synced   bool
	problems []source.Problem
}

// Snapshot is what the Writer last published, for the debug endpoint.
type Snapshot struct {
	Generation  uint64
	PublishedAt time.Time
	// Took is how long the publish took (merge, translation, the cache).
	Took  time.Duration
	State *mcs.State
	Views []translate.View
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
	Statuses  []gatewayapi.Status
	RouteRefs map[gatewayapi.RouteKey][]mcs.ServiceKey
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
	if opts.RestAfter <= 0 {
		opts.RestAfter = DefaultRestAfter
	}
	if opts.LivenessTimeout <= 0 {
		opts.LivenessTimeout = DefaultLivenessTimeout
	}
	w := &Writer{
		opts: opts, log: log, metrics: m, cache: c, now: time.Now,
		publishLog: ratelog.New(log, time.Second, 5),
		in:         make(chan batch, 64),
		missing:    make(chan struct{}, 1),
		refused:    map[string]bool{},
		sources:    map[string]*sourceState{},
		asm:        assemble.New(assemble.Options{GatewayPort: opts.GatewayPort, ListenAddress: opts.ListenAddress, TunnelPort: opts.TunnelPort, TrustDomain: opts.TrustDomain, Store: opts.Store, Anchors: opts.Anchors, Translate: opts.Translate}),
	}
	c.OnMissing(func() {
		select {
		case w.missing <- struct{}{}:
		default: // already signalled
		}
	})
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

// Waiting returns the declared sources (a member's kubeconfig, the YAML
// folder) that have not delivered their initial state yet, sorted: what
// /readyz waits for.
func (w *Writer) Waiting() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, s := range w.sources {
		if !s.synced {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
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
func (w *Writer) Sink(name string) func([]event.Event, []source.Problem) {
	return func(evs []event.Event, probs []source.Problem) {
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
	// due fires when the assembler has something to do though no event
	// came (a tunnel certificate announced to the peers, to present now).
	due := time.NewTimer(time.Hour)
	due.Stop()
	// rest ends the rest after a costly publish (PublishRest).
	rest := time.NewTimer(time.Hour)
	rest.Stop()
	var restUntil time.Time
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
		} else if now := w.now(); now.Before(restUntil) {
			pending = true
			rest.Reset(restUntil.Sub(now))
			return
		}
		holdoff.Stop()
		deadline.Stop()
		pending = false
		w.owe()
		start := time.Now()
		w.publish()
		if took := time.Since(start); took >= w.opts.RestAfter {
			restUntil = w.now().Add(min(took*PublishRest, MaxRest))
		}
		w.owedSince.Store(0)
		if at := w.asm.Due(); !at.IsZero() {
			due.Reset(max(time.Until(at), time.Millisecond))
		}
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
		case <-due.C:
			if initialized {
				publish()
			}
		case <-rest.C:
			if pending {
				publish()
			}
		case <-w.missing:
			if !initialized || !w.wantMissing() {
				continue // offered again after the first publish
			}
			w.owe()
			if !pending {
				pending = true
				deadline.Reset(w.opts.MaxDelay)
			}
			holdoff.Reset(w.opts.Holdoff)
		}
	}
}

// wantMissing offers the assembler the views clients wait for (zone
// views are made when asked for: assemble.Assembler.WantView) and
// reports whether it will make any. A view refused over the bound is
// logged once.
func (w *Writer) wantMissing() bool {
	made := false
	for _, name := range w.cache.Missing() {
		ok, err := w.asm.WantView(name)
		if err != nil && !w.refused[name] {
			if len(w.refused) >= 1024 {
				clear(w.refused) // bounded: a client may claim any zone
			}
			w.refused[name] = true
			w.log.Warn("zone view not made", "view", name, "err", err)
		}
		made = made || ok
	}
	return made
}

func (w *Writer) receive(b batch) {
	if b.anchors != nil {
		w.asm.SetAnchors(b.anchors)
		return
	}
	if b.pins != nil {
		w.asm.SetRelayPins(b.pins)
	}
	for _, ev := range b.events {
		if err := w.asm.Apply(ev); err != nil {
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

// publish flushes the assembler and publishes its Plan into the cache:
// new and changed resources cluster first, route last (make before
// break), then deletions in the reverse order (break after make), then
// the views; and tells metrics, the snapshot and the callbacks.
func (w *Writer) publish() {
	start := time.Now()
	began := start
	w.asm.Merge()
	mergeTook := time.Since(start)
	w.metrics.Merged(mergeTook)
	start = time.Now()
	plan := w.asm.Flush()
	if plan.Changes.Clusters {
		w.metrics.Clusters(plan.State.Clusters)
		w.logMemberProblems(plan.State.Clusters)
	}
	for _, sc := range plan.Services {
		w.metrics.Service(sc.Key, sc.State, sc.ImportDelta)
	}
	for _, inv := range plan.Invalid {
		w.log.Warn("resource failed validation and is not published", "view", inv.View, "resource", inv.Error())
	}
	sent := w.cache.Responses()
	if err := Publish(w.cache, plan); err != nil {
		w.log.Error("cannot publish resources", "err", err)
	}
	w.metrics.Translated(time.Since(start))
	if w.gen > 0 && plan.Changed {
		w.logPublish(plan, w.cache.Responses()-sent)
	}
	if w.gen == 0 {
		w.log.Info("first publish", "services", plan.State.Services.Len(), "views", len(w.asm.Views()),
			"merge", mergeTook.Round(time.Millisecond), "translate", time.Since(start).Round(time.Millisecond))
	}
	if plan.Changed || w.gen == 0 {
		w.gen++
	}
	// The callbacks are told before the snapshot is stored: whoever waits
	// on Published sees everything of this publish done.
	if plan.Changes.Clusters || w.gen == 1 {
		// Views clients waited for may be made now (a zone view of a
		// member that just joined).
		select {
		case w.missing <- struct{}{}:
		default:
		}
	}
	if w.onPublish != nil && (!plan.Changes.Empty() || w.gen == 1) {
		w.onPublish(plan.State, plan.Changes.Services, plan.Changes.Clusters || w.gen == 1)
	}
	gws := w.asm.Gateways()
	for _, m := range plan.Rebuilt {
		w.metrics.GatewayStatuses(m, gws[m].Statuses)
		if w.onGatewayAPI != nil {
			w.onGatewayAPI(m, gws[m])
		}
	}
	w.snapshot(plan.State, time.Since(began))
}

// logMemberProblems warns, once per change, of what is wrong with the
// members: a member left out of the merge, and their gateways: Services labelled as east-west gateways outside the
// gateway namespace, and tunnel Secrets that are missing or do not parse.
func (w *Writer) logMemberProblems(clusters []mcs.ClusterInfo) {
	now := map[string]string{}
	for _, c := range clusters {
		if c.Error != "" {
			// Left out of the merge (a duplicate or invalid cluster ID,
			// another ClusterSet): none of its exports count.
			now["left-out/"+c.Member] = c.Error
			if w.problems["left-out/"+c.Member] != c.Error {
				w.log.Warn("member left out of the ClusterSet: none of its exports are merged", "member", c.Member, "cluster", c.ID, "reason", c.Error)
			}
		}
		if len(c.IgnoredGateways) > 0 {
			list := strings.Join(c.IgnoredGateways, ",")
			now["ignored/"+c.Member] = list
			if w.problems["ignored/"+c.Member] != list {
				w.log.Warn("Services labelled "+mcs.LabelGateway+" outside the gateway namespace are ignored: only the operator declares gateways (--gateway-namespace)",
					"member", c.Member, "services", list)
			}
		}
		if c.TunnelError != "" {
			now["tunnel/"+c.Member] = c.TunnelError
			if w.problems["tunnel/"+c.Member] != c.TunnelError {
				w.log.Warn("tunnel certificate", "member", c.Member, "problem", c.TunnelError, "gatewayError", c.GatewayError)
			}
		}
	}
	w.problems = now
}

// logPublish says, at info and at most a few times a second, that a change
// was applied: what changed, the generation, and how many responses went
// to clients at once (clients whose streams were busy get theirs as soon
// as they have room).
func (w *Writer) logPublish(plan assemble.Plan, responses int64) {
	resources := 0
	views := map[string]bool{}
	for _, u := range plan.Updates {
		resources += len(u.Set) + len(u.Delete)
		views[u.View] = true
	}
	args := []any{"generation", w.gen + 1, "services", len(plan.Changes.Services), "resources", resources, "views", len(views), "responses", responses}
	if n := len(plan.Changes.Services); n > 0 {
		shown := make([]string, 0, min(n, 3))
		for _, k := range plan.Changes.Services[:min(n, 3)] {
			shown = append(shown, k.String())
		}
		args = append(args, "changed", strings.Join(shown, ","))
	}
	if plan.Changes.Clusters {
		args = append(args, "members", "changed")
	}
	if len(plan.Rebuilt) > 0 {
		args = append(args, "gatewayAPI", strings.Join(plan.Rebuilt, ","))
	}
	w.publishLog.Info("publish", "published", args...)
}

// Publish applies a Plan to the cache: its updates in order, then the
// views when they changed (after the resources, so a new view's clients
// get them at once). It returns the resources that could not be
// marshalled; the rest is published.
func Publish(c *cache.Cache, plan assemble.Plan) error {
	err := c.Apply(plan.Updates)
	if plan.Views != nil {
		c.SetViews(plan.Views)
	}
	return err
}

func (w *Writer) snapshot(state *mcs.State, took time.Duration) {
	invalid := w.asm.Invalid()
	counts := map[string]int{}
	for _, list := range invalid {
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
	for m, r := range w.asm.Gateways() {
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
		Took:        took,
		State:       state,
		Views:       w.asm.Views(),
		Invalid:     invalid,
		Problems:    probs,
		Sources:     srcs,
	})
	// Ready once published: Run publishes only after every source
	// synced, or after the sync timeout let the others go.
	w.ready.Store(true)
}
