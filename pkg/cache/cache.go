package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/eastwest-dev/eastwest/internal/parallel"
	"github.com/eastwest-dev/eastwest/pkg/resource"
)

// NodeViewFunc maps a client's node to the view it reads. An error means
// the node declares nothing usable: it gets no answer, and the error is
// what the debug endpoint shows for it.
type NodeViewFunc func(*corev3.Node) (string, error)

// Resource is one resource to publish in a view.
type Resource = resource.Resource

// Update changes one type of one view: Set adds or replaces resources,
// Delete removes names (resource.Update: what pkg/assemble's Plans carry,
// applied as they come).
type Update = resource.Update

// Cache holds the resources of every view and the clients' watches.
type Cache struct {
	nodeView NodeViewFunc

	mu    sync.Mutex
	views map[string]*view

	// epoch makes the versions of a view that was freed and made again
	// differ from all its earlier ones (see release): type versions start
	// at epoch<<32.
	epoch uint64
	// blocked are the watches that had something to send while their
	// stream's response channel was full (see respond); retrying says a
	// goroutine retries them.
	blocked  map[*watch]struct{}
	retrying bool
	// touches numbers the endpoints sent again unchanged (resendEndpoints).
	touches uint64

	marshals atomic.Int64
	// responses counts the responses handed to streams (Responses).
	responses atomic.Int64
}

// retryInterval is how often blocked watches are retried.
const retryInterval = 20 * time.Millisecond

// view is one view's resources and watches.
type view struct {
	exists bool
	types  map[string]*typeState
	// watches counts the indexed watches: a view that does not exist is
	// freed when its last watch goes (see release).
	watches int
}

// typeState is one type of one view.
type typeState struct {
	resources map[string]*entry
	// version counts the changes of this type in this view; it is the
	// version_info of responses.
	version   uint64
	updatedAt time.Time
	// wildcard holds the wildcard watches and those subscribed to more
	// than indexLimit names: waking them costs a lookup per changed name,
	// indexing them would cost one per subscribed name at every request.
	wildcard map[*watch]struct{}
	byName   map[string]map[*watch]struct{}
	// log lists the names each recent version changed, so that a client a
	// few versions behind is caught up by comparing only those.
	log []logEntry
}

// logEntry is the names one version of a type changed.
type logEntry struct {
	version uint64
	names   []string
}

// logLength bounds the change log; a client further behind is compared
// in full.
const logLength = 256

// record bumps the type's version for a change of names.
func (ts *typeState) record(names []string, now time.Time) {
	ts.version++
	ts.updatedAt = now
	if len(ts.log) == logLength {
		ts.log = slices.Delete(ts.log, 0, logLength/4)
	}
	ts.log = append(ts.log, logEntry{version: ts.version, names: names})
}

// since returns the names changed after version v, or false when the log
// does not reach back that far.
func (ts *typeState) since(v uint64) ([]string, bool) {
	if v == ts.version {
		return []string{}, true
	}
	if v > ts.version || len(ts.log) == 0 || ts.log[0].version > v+1 {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(ts.log, v+1, func(e logEntry, t uint64) int { return cmp.Compare(e.version, t) })
	var out []string
	for _, e := range ts.log[i:] {
		out = append(out, e.names...)
	}
	slices.Sort(out)
	return slices.Compact(out), true
}

// entry is one published resource, marshalled once.
type entry struct {
	name    string
	version string
	// since is the type version that introduced this resource version: a
	// client that acknowledged it (or later) has this resource.
	since uint64
	// any is the marshalled resource. The message it came from is not
	// kept: the bytes are what clients get, and a fraction of the
	// message's size (Resources decodes them again for the few readers).
	any *anypb.Any
	// delta is the resource as delta responses carry it, shared by every
	// response that sends this version (gRPC only reads it).
	delta *discoveryv3.Resource
}

func newEntry(name, version string, a *anypb.Any) *entry {
	return &entry{name: name, version: version, any: a, delta: &discoveryv3.Resource{Name: name, Version: version, Resource: a}}
}

// indexLimit is the largest subscription indexed by name.
const indexLimit = 32

// versionKey is the key, in a delta client's returned-versions map, under
// which the cache notes the type version its last response brought the
// client up to. No resource has an empty name, and go-control-plane's
// server keeps the map as given.
const versionKey = ""

// watch is one outstanding request of one stream for one type.
type watch struct {
	view  string
	typ   string
	ts    *typeState
	names []string // indexed names (nil for wildcard)
	sub   cachev3.Subscription
	// initial is true for a stream's first request of the type, which is
	// always answered once the view exists (even with nothing).
	initial bool
	// resend answers with every subscribed resource, held or not: the
	// client asked again for what it holds (a SotW request repeating an
	// acknowledged nonce; Envoy does so for the endpoints or routes of a
	// cluster or listener it keeps warming until they come).
	resend bool

	// indexed is set while the watch is in its type's indexes.
	indexed bool

	sotwReq  *cachev3.Request
	sotwOut  chan cachev3.Response
	deltaReq *cachev3.DeltaRequest
	deltaOut chan cachev3.DeltaResponse
}

// hasRoom reports whether the watch's response channel can take a
// response without blocking. Only the cache sends on it, always holding
// c.mu, and the stream only takes from it, so room seen under c.mu is
// still there when the cache sends.
func (w *watch) hasRoom() bool {
	if w.sotwOut != nil {
		return len(w.sotwOut) < cap(w.sotwOut)
	}
	return len(w.deltaOut) < cap(w.deltaOut)
}

// New returns an empty cache. nodeView assigns clients to views.
func New(nodeView NodeViewFunc) *Cache {
	return &Cache{nodeView: nodeView, views: map[string]*view{}, blocked: map[*watch]struct{}{}}
}

var _ cachev3.Cache = (*Cache)(nil)

// Marshals reports how many resources the cache has marshalled: one per
// new version of a resource, however many clients receive it.
func (c *Cache) Marshals() int64 { return c.marshals.Load() }

// Responses counts the responses handed to clients' streams so far.
func (c *Cache) Responses() int64 { return c.responses.Load() }

// fullStateTypes are the types whose SotW responses must list every
// subscribed resource: a missing one is deleted.
func fullState(typ string) bool {
	return typ == resourcev3.ListenerType || typ == resourcev3.ClusterType
}

func (c *Cache) view(name string) *view {
	v := c.views[name]
	if v == nil {
		v = &view{types: map[string]*typeState{}}
		c.views[name] = v
	}
	return v
}

func (c *Cache) typ(v *view, t string) *typeState {
	ts := v.types[t]
	if ts == nil {
		ts = &typeState{version: c.epoch << 32, resources: map[string]*entry{}, wildcard: map[*watch]struct{}{}, byName: map[string]map[*watch]struct{}{}}
		v.types[t] = ts
	}
	return ts
}

// release frees a view that does not exist, serves nothing and has no
// watch left: the state a client made by claiming a view that is not
// one (a cluster that is not a member, a Gateway eastwest does not
// program) goes with its last stream. A later view of the same name
// starts a new epoch of versions, so that a client holding a version of
// the old one is never taken to be up to date with the new one.
func (c *Cache) release(name string) {
	v := c.views[name]
	if v == nil || v.exists || v.watches > 0 {
		return
	}
	for _, ts := range v.types {
		if len(ts.resources) > 0 {
			return
		}
	}
	delete(c.views, name)
	c.epoch++
}

// SetViews declares which views exist: clients of other views wait, and
// are answered as soon as their view appears. Views no longer listed lose
// their resources (clients see them deleted).
func (c *Cache) SetViews(names []string) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
		v := c.view(n)
		if !v.exists {
			v.exists = true
			for _, ts := range v.types {
				ts.record(slices.Collect(maps.Keys(ts.resources)), now)
				c.wake(ts, nil, true)
			}
		}
	}
	for n, v := range c.views {
		if want[n] || !v.exists {
			continue
		}
		v.exists = false
		for _, ts := range v.types {
			deleted := slices.Collect(maps.Keys(ts.resources))
			clear(ts.resources)
			ts.record(deleted, now)
			c.wake(ts, deleted, false)
		}
		c.release(n)
	}
}

// Apply publishes updates, marshalling each new resource once (outside
// the lock) and skipping resources whose content did not change. Updates
// are applied, and watches woken, type by type in the order given, so
// that a caller listing clusters before routes never has a route served
// without its cluster. It returns the first marshal error; the resources
// that failed are left as they were.
func (c *Cache) Apply(updates []Update) error {
	type prepared struct {
		u       Update
		entries []*entry
	}
	var errs []error
	marshalled := c.marshalAll(updates)
	prep := make([]prepared, 0, len(updates))
	for i, u := range updates {
		p := prepared{u: u, entries: make([]*entry, 0, len(u.Set))}
		for j, r := range u.Set {
			m := marshalled[i][j]
			if m.err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", u.Type, r.Name, m.err))
				continue
			}
			p.entries = append(p.entries, m.e)
		}
		prep = append(prep, p)
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range prep {
		v := c.view(p.u.View)
		ts := c.typ(v, p.u.Type)
		var changed, updatedClusters []string
		for _, e := range p.entries {
			old, ok := ts.resources[e.name]
			if ok && old.version == e.version {
				continue
			}
			if ok && p.u.Type == resourcev3.ClusterType {
				updatedClusters = append(updatedClusters, e.name)
			}
			e.since = ts.version + 1
			ts.resources[e.name] = e
			changed = append(changed, e.name)
		}
		for _, name := range p.u.Delete {
			if _, ok := ts.resources[name]; ok {
				delete(ts.resources, name)
				changed = append(changed, name)
			}
		}
		if len(changed) == 0 {
			continue
		}
		ts.record(changed, now)
		if v.exists {
			c.wake(ts, changed, false)
		}
		c.resendEndpoints(v, updatedClusters, now)
	}
	return errors.Join(errs...)
}

// resendEndpoints sends again, after clusters of a view were updated, the
// endpoints of those clusters, changed or not (under a new version, the
// same bytes). Envoy keeps an updated EDS cluster warming, and withholds
// its CDS ACK, until it gets the cluster's endpoints again; over delta it
// asks for nothing, and over SotW its request looks like an ACK (xDS
// protocol, "resource warming"). Without this a cluster-only change (a
// member's tunnel certificate, a service's session affinity) left the
// gateway STALE for Envoy's 15 s endpoint timeout, with later cluster
// updates queued behind it. An EDS cluster's endpoints are named as the
// cluster (translate). Called with c.mu held.
func (c *Cache) resendEndpoints(v *view, clusters []string, now time.Time) {
	if len(clusters) == 0 {
		return
	}
	ts := c.typ(v, resourcev3.EndpointType)
	var again []string
	for _, name := range clusters {
		old, ok := ts.resources[name]
		if !ok {
			continue
		}
		c.touches++
		base, _, _ := strings.Cut(old.version, "~") // one suffix, however often it is sent again
		e := newEntry(name, base+"~"+strconv.FormatUint(c.touches, 10), old.any)
		e.since = ts.version + 1
		ts.resources[name] = e
		again = append(again, name)
	}
	if len(again) == 0 {
		return
	}
	ts.record(again, now)
	if v.exists {
		c.wake(ts, again, false)
	}
}

// parallelMarshal is the number of resources from which Apply marshals
// on every core: a first publish of 10,000 services marshals hundreds of
// thousands of resources; a change of one service, a handful.
const parallelMarshal = 512

type marshalled struct {
	e   *entry
	err error
}

// marshalAll marshals every resource of the updates, in parallel when
// there are many.
// A message given to several views (one pointer in several updates: a
// resource identical across views) is marshalled once, and its bytes
// shared.
func (c *Cache) marshalAll(updates []Update) [][]marshalled {
	out := make([][]marshalled, len(updates))
	type job struct{ i, j int }
	var jobs []job
	first := map[proto.Message]int{} // message -> its job
	var dups [][2]int                // {job of a repeat, job of its first}
	for i, u := range updates {
		out[i] = make([]marshalled, len(u.Set))
		for j, r := range u.Set {
			if k, ok := first[r.Message]; ok && updates[jobs[k].i].Type == u.Type {
				dups = append(dups, [2]int{len(jobs), k})
			} else {
				first[r.Message] = len(jobs)
			}
			jobs = append(jobs, job{i, j})
		}
	}
	repeat := make(map[int]bool, len(dups))
	for _, d := range dups {
		repeat[d[0]] = true
	}
	parallel.For(len(jobs), parallelMarshal, func(k int) {
		if repeat[k] {
			return
		}
		jb := jobs[k]
		u := updates[jb.i]
		e, err := c.marshal(u.Type, u.Set[jb.j])
		out[jb.i][jb.j] = marshalled{e, err}
	})
	for _, d := range dups {
		rep, orig := jobs[d[0]], jobs[d[1]]
		m := out[orig.i][orig.j]
		if m.e != nil {
			// Each view's entry is its own (its since differs); the
			// bytes and version are shared.
			e := *m.e
			if name := updates[rep.i].Set[rep.j].Name; name != e.name {
				e = *newEntry(name, e.version, e.any)
			}
			m.e = &e
		}
		out[rep.i][rep.j] = m
	}
	return out
}

// marshal serializes a resource deterministically, so that its version
// (a hash of the bytes) changes exactly when its content does.
func (c *Cache) marshal(typ string, r Resource) (*entry, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Message)
	if err != nil {
		return nil, err
	}
	c.marshals.Add(1)
	h := fnv.New64a()
	_, _ = h.Write(b) // a hash.Hash never fails
	return newEntry(r.Name, strconv.FormatUint(h.Sum64(), 36), &anypb.Any{TypeUrl: typ, Value: b}), nil
}

// wake answers the watches interested in the changed names (all of them
// when all is set) that now have something to send. Called with c.mu held.
func (c *Cache) wake(ts *typeState, changed []string, all bool) {
	woken := map[*watch]struct{}{}
	for w := range ts.wildcard {
		if all || w.wantsAny(changed) {
			woken[w] = struct{}{}
		}
	}
	if all {
		for _, set := range ts.byName {
			for w := range set {
				woken[w] = struct{}{}
			}
		}
	}
	for _, n := range changed {
		for w := range ts.byName[n] {
			woken[w] = struct{}{}
		}
	}
	var only []string
	if !all {
		only = changed
	}
	for w := range woken {
		if c.respond(w, true, only) {
			c.unindex(w)
		}
	}
}

// respond sends w its response if it has one and reports whether it did.
// Called with c.mu held, so it never blocks: go-control-plane's servers
// give each stream room for two responses per served type (delta) or
// one channel per watch (SotW), and a watch is answered at most once, so
// with the types bounded (CheckType) a channel is never full. Should one
// be (a stream that does not read, a server that does not keep to this),
// the watch is not answered now but kept and retried (see block) until
// its stream takes its earlier responses or cancels it: no stream can
// hold up the cache, the writer or any other stream.
//
// changed, when not nil, are the only names that changed since the watch
// was registered: a registered watch's client had everything current at
// registration, so only those names need comparing (which keeps a change
// of one resource O(1) per client instead of O(resources)). A nil changed
// compares everything the client subscribes to.
func (c *Cache) respond(w *watch, exists bool, changed []string) bool {
	if !exists {
		return false
	}
	if !w.hasRoom() {
		c.block(w)
		return false
	}
	if w.sotwOut != nil {
		r := c.sotwResponse(w, changed)
		if r == nil {
			return false
		}
		w.sotwOut <- r
		c.responses.Add(1)
		return true
	}
	r := c.deltaResponse(w, changed)
	if r == nil {
		return false
	}
	w.deltaOut <- r
	c.responses.Add(1)
	return true
}

// block notes a watch that has something to send but no room to send it;
// a goroutine retries blocked watches until none is left.
func (c *Cache) block(w *watch) {
	c.blocked[w] = struct{}{}
	if !c.retrying {
		c.retrying = true
		go c.retryBlocked()
	}
}

// retryBlocked answers blocked watches once their channels have room. A
// retried watch compares everything it subscribes to: what changed while
// it waited is not known.
func (c *Cache) retryBlocked() {
	t := time.NewTicker(retryInterval)
	defer t.Stop()
	for range t.C {
		c.mu.Lock()
		for w := range c.blocked {
			if !w.hasRoom() {
				continue
			}
			delete(c.blocked, w)
			v := c.views[w.view]
			if c.respond(w, v != nil && v.exists, nil) {
				c.unindex(w)
			}
		}
		done := len(c.blocked) == 0
		if done {
			c.retrying = false
		}
		c.mu.Unlock()
		if done {
			return
		}
	}
}

func (c *Cache) index(w *watch) {
	if !w.indexed {
		w.indexed = true
		c.views[w.view].watches++
	}
	if w.sub.IsWildcard() || len(w.sub.SubscribedResources()) > indexLimit {
		w.ts.wildcard[w] = struct{}{}
		return
	}
	for n := range w.sub.SubscribedResources() {
		w.names = append(w.names, n)
		set := w.ts.byName[n]
		if set == nil {
			set = map[*watch]struct{}{}
			w.ts.byName[n] = set
		}
		set[w] = struct{}{}
	}
}

func (c *Cache) unindex(w *watch) {
	delete(c.blocked, w)
	if w.indexed {
		w.indexed = false
		if v := c.views[w.view]; v != nil {
			v.watches--
			defer c.release(w.view)
		}
	}
	delete(w.ts.wildcard, w)
	for _, n := range w.names {
		if set := w.ts.byName[n]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(w.ts.byName, n)
			}
		}
	}
	w.names = nil
}

// wantsAny reports whether the watch subscribes to any of the names.
func (w *watch) wantsAny(names []string) bool {
	for _, n := range names {
		if w.wants(n) {
			return true
		}
	}
	return false
}

// wants reports whether the watch subscribes to a name.
func (w *watch) wants(name string) bool {
	if w.sub.IsWildcard() {
		return true
	}
	_, ok := w.sub.SubscribedResources()[name]
	return ok
}

// candidates lists the resources a watch may receive: all of the type for
// a wildcard subscription, else the subscribed ones that exist.
func (w *watch) candidates() []*entry {
	var out []*entry
	if w.sub.IsWildcard() {
		out = make([]*entry, 0, len(w.ts.resources))
		for _, e := range w.ts.resources {
			out = append(out, e)
		}
		return out
	}
	for n := range w.sub.SubscribedResources() {
		if e, ok := w.ts.resources[n]; ok {
			out = append(out, e)
		}
	}
	return out
}

// split sorts the names a watch wants into resources that exist and names
// that are gone; with changed nil it covers everything the client has or
// wants.
func (w *watch) split(changed []string, returned map[string]string) (present []*entry, gone []string) {
	if changed == nil {
		for n := range returned {
			if _, ok := w.ts.resources[n]; !ok && n != versionKey {
				gone = append(gone, n)
			}
		}
		return w.candidates(), gone
	}
	for _, n := range changed {
		if !w.wants(n) {
			continue
		}
		if e, ok := w.ts.resources[n]; ok {
			present = append(present, e)
		} else if _, had := returned[n]; had {
			gone = append(gone, n)
		}
	}
	return present, gone
}

// ctxKey carries a response's responseInfo in its context, which the
// server hands to the Tracker with the response (and drops with it: the
// cache keeps nothing per response).
type ctxKey struct{}

// responseInfo is what the Tracker learns of a response from its context.
type responseInfo struct {
	// updatedAt is the time of the update the response delivers.
	updatedAt time.Time
	// entries are the resources of a SotW response.
	entries []*entry
}

func responseContext(ts *typeState, entries []*entry) context.Context {
	return context.WithValue(context.Background(), ctxKey{}, &responseInfo{updatedAt: ts.updatedAt, entries: entries})
}

// responseInfoOf is the responseInfo in a response's context, or nil.
func responseInfoOf(ctx context.Context) *responseInfo {
	if ctx == nil {
		return nil
	}
	info, _ := ctx.Value(ctxKey{}).(*responseInfo)
	return info
}

func (r *responseInfo) at() (time.Time, bool) {
	if r == nil || r.updatedAt.IsZero() {
		return time.Time{}, false
	}
	return r.updatedAt, true
}

// VersionTime returns when version (a response's version_info) of a type
// in a view was made, if it is still the current one.
func (c *Cache) VersionTime(viewName, typ, version string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.views[viewName]
	if v == nil || v.types[typ] == nil {
		return time.Time{}, false
	}
	ts := v.types[typ]
	if strconv.FormatUint(ts.version, 10) != version {
		return time.Time{}, false
	}
	return ts.updatedAt, true
}

// CreateWatch answers a SotW request now if the client lacks something,
// else when something it subscribes to changes.
func (c *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	return c.createWatch(req, sub, out, false, false)
}

// createWatch is CreateWatch for eastwest's SotW server, which also says
// whether the request changed the subscription's names. A first request,
// and a changed subscription of a full-state type (LDS, CDS), are
// answered even when nothing the client holds changed: such a response
// lists every subscribed resource that exists, which is how the client
// learns the server saw its new names (xDS protocol: LDS and CDS
// responses include every requested resource). An ACK that repeats the
// names waits for a change.
func (c *Cache) createWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response, namesChanged, again bool) (func(), error) {
	if err := checkWatch(req.GetTypeUrl(), req.GetResourceNames(), sub); err != nil {
		return nil, err
	}
	viewName, err := c.nodeView(req.GetNode())
	if err != nil {
		// The node is refused: never answered (the Tracker shows why).
		return func() {}, nil
	}
	answer := req.GetResponseNonce() == "" || (namesChanged && fullState(req.GetTypeUrl())) || again
	w := &watch{view: viewName, typ: req.GetTypeUrl(), sub: sub, sotwReq: req, sotwOut: out, initial: answer, resend: again}
	return c.register(w), nil
}

// CreateDeltaWatch is CreateWatch for the incremental protocol.
func (c *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if err := checkWatch(req.GetTypeUrl(), req.GetResourceNamesSubscribe(), sub); err != nil {
		return nil, err
	}
	viewName, err := c.nodeView(req.GetNode())
	if err != nil {
		return func() {}, nil
	}
	// A name subscribed again while held is sent again: Envoy
	// re-subscribes the endpoints (or routes) of a cluster (or listener)
	// it keeps warming until they come, even when they did not change.
	// The returned map is the stream's, and this is its goroutine.
	// (A stream's first request subscribes what the client says it holds
	// from before a reconnection, initial_resource_versions: not again.)
	if returned := sub.ReturnedResources(); len(returned) > 0 && req.GetResponseNonce() != "" {
		for _, n := range req.GetResourceNamesSubscribe() {
			delete(returned, n)
		}
	}
	w := &watch{view: viewName, typ: req.GetTypeUrl(), sub: sub, deltaReq: req, deltaOut: out, initial: req.GetResponseNonce() == ""}
	return c.register(w), nil
}

// checkWatch refuses, before any state is kept, a type the cache does not
// serve and a subscription beyond the limits. The stream ends with the
// refusal as its status.
func checkWatch(typ string, names []string, sub cachev3.Subscription) error {
	if err := CheckType(typ); err != nil {
		return err
	}
	return CheckNames(names, len(sub.SubscribedResources()), 0)
}

func (c *Cache) register(w *watch) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.view(w.view)
	w.ts = c.typ(v, w.typ)
	changed, ok := w.catchUp()
	if !ok {
		changed = nil // compare everything
	}
	if c.respond(w, v.exists, changed) {
		return func() {}
	}
	c.index(w)
	return func() {
		c.mu.Lock()
		c.unindex(w)
		c.mu.Unlock()
	}
}

// catchUp returns the names that may have changed for the client since
// the version it holds, without looking at every subscribed resource, or
// false when it cannot tell (then everything is compared). The common
// case, an ACK of the latest version, costs O(1): that is what keeps an
// update's cost proportional to what changed rather than to what clients
// subscribe to.
//
// SotW: the client holds the version_info it acknowledges, and every
// subscribed name is among those returned (go-control-plane's server drops
// returned names that are no longer subscribed, so a changed subscription
// shows as fewer returned than subscribed names). Delta: the request
// changes no subscription, and the versions map notes the version the
// last response brought the client to.
func (w *watch) catchUp() ([]string, bool) {
	if w.initial {
		return nil, false
	}
	returned := w.sub.ReturnedResources()
	var held string
	if w.sotwReq != nil {
		if !w.sub.IsWildcard() && len(returned) != len(w.sub.SubscribedResources()) {
			return nil, false
		}
		held = w.sotwReq.GetVersionInfo()
	} else {
		r := w.deltaReq
		if len(r.GetResourceNamesSubscribe()) > 0 || len(r.GetResourceNamesUnsubscribe()) > 0 {
			return nil, false
		}
		held = returned[versionKey]
	}
	v, err := strconv.ParseUint(held, 10, 64)
	if err != nil {
		return nil, false
	}
	return w.ts.since(v)
}

// sotwResponse builds w's state-of-the-world response, or nil when the
// client already has everything. The server records the returned versions
// as the client's, so a NACKed version is never sent twice.
func (c *Cache) sotwResponse(w *watch, changed []string) cachev3.Response {
	returned := w.sub.ReturnedResources()
	present, gone := w.split(changed, returned)
	var send []*entry
	dirty := false
	for _, e := range present {
		if returned[e.name] != e.version {
			dirty = true
			send = append(send, e)
		}
	}
	full := fullState(w.typ)
	if full {
		// LDS and CDS responses list every subscribed resource; a name
		// left out is deleted.
		dirty = dirty || len(gone) > 0
		if !dirty && !w.initial {
			return nil
		}
		if changed != nil {
			present = w.candidates()
		}
		send = present
	} else {
		// EDS and RDS responses carry only what changed, unless the
		// client asked again for what it holds.
		mustAnswer := w.initial && len(present) > 0
		if w.resend {
			if changed != nil {
				present = w.candidates()
			}
			send = present
		}
		if len(send) == 0 && !mustAnswer {
			return nil
		}
	}
	w.initial, w.resend = false, false
	return &sotwResponse{
		req:     w.sotwReq,
		version: strconv.FormatUint(w.ts.version, 10),
		entries: send,
		full:    full,
		prev:    returned,
		gone:    gone,
		ctx:     responseContext(w.ts, send),
	}
}

// deltaResponse builds w's incremental response: changed resources and
// removed names, or nil when there is nothing to say.
func (c *Cache) deltaResponse(w *watch, changed []string) cachev3.DeltaResponse {
	returned := w.sub.ReturnedResources()
	present, removed := w.split(changed, returned)
	var send []*entry
	for _, e := range present {
		if returned[e.name] != e.version {
			send = append(send, e)
		}
	}
	// A stream's first request of a type is answered even when it brings
	// nothing: a wildcard client (Envoy's CDS and LDS) waits for it to
	// finish initializing, and a client that reconnects holding every
	// current version (initial_resource_versions) learns that it is up to
	// date, and says so with its ACK (xds status shows it SYNCED, not
	// WAITING forever).
	mustAnswer := w.initial
	if len(send) == 0 && len(removed) == 0 && !mustAnswer {
		return nil
	}
	w.initial = false
	slices.Sort(removed)
	// The versions map is updated in place: go-control-plane's delta
	// server touches it only from the stream's goroutine after cancelling
	// this watch (which waits for c.mu), sends every response it is given,
	// and then stores this same map. (SotW may drop a response when a new
	// request arrives, so its map is copied.)
	next := returned
	if next == nil {
		next = make(map[string]string, len(send)+1) // no growth: it is kept for the stream's life
	}
	for _, n := range removed {
		delete(next, n)
	}
	for _, e := range send {
		next[e.name] = e.version
	}
	next[versionKey] = strconv.FormatUint(w.ts.version, 10)
	return &deltaResponse{
		req:      w.deltaReq,
		version:  strconv.FormatUint(w.ts.version, 10),
		entries:  send,
		removed:  removed,
		returned: next,
		ctx:      responseContext(w.ts, nil),
	}
}

// Fetch answers a REST (unary) request with the current resources.
func (c *Cache) Fetch(_ context.Context, req *cachev3.Request) (cachev3.Response, error) {
	if err := CheckType(req.GetTypeUrl()); err != nil {
		return nil, err
	}
	if err := CheckNames(req.GetResourceNames(), 0, 0); err != nil {
		return nil, err
	}
	viewName, err := c.nodeView(req.GetNode())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.views[viewName]
	if v == nil || !v.exists {
		return nil, fmt.Errorf("view %s has no resources", viewName)
	}
	ts := c.typ(v, req.GetTypeUrl())
	version := strconv.FormatUint(ts.version, 10)
	if req.GetVersionInfo() == version {
		return nil, &types.SkipFetchError{}
	}
	w := &watch{ts: ts, typ: req.GetTypeUrl(), sub: fetchSubscription(req.GetResourceNames())}
	return &sotwResponse{req: req, version: version, entries: w.candidates(), full: true, ctx: responseContext(ts, nil)}, nil
}

// fetchSubscription is the subscription of a unary request.
type fetchSubscription []string

func (f fetchSubscription) ReturnedResources() map[string]string { return nil }
func (f fetchSubscription) IsWildcard() bool                     { return len(f) == 0 }
func (f fetchSubscription) SubscribedResources() map[string]struct{} {
	out := make(map[string]struct{}, len(f))
	for _, n := range f {
		out[n] = struct{}{}
	}
	return out
}

// Snapshot is what a view holds of one type: for debugging and config
// dumps.
type Snapshot struct {
	Version   string
	UpdatedAt time.Time
	Resources []Published
}

// Published is one resource as the cache serves it.
type Published struct {
	Name    string
	Version string
	// Since is the type version (response version_info) that first
	// carried this version of the resource.
	Since   uint64
	Message proto.Message
}

// Resources returns what a view serves of a type, sorted by name.
func (c *Cache) Resources(viewName, typ string) Snapshot { return c.ResourcesWhere(viewName, typ, nil) }

// ResourcesWhere is Resources for the names keep accepts (nil: all).
// Resources are decoded from their bytes outside the cache's lock, so a
// debug read of a large view never holds up a publish.
func (c *Cache) ResourcesWhere(viewName, typ string, keep func(name string) bool) Snapshot {
	c.mu.Lock()
	v := c.views[viewName]
	if v == nil || v.types[typ] == nil {
		c.mu.Unlock()
		return Snapshot{}
	}
	ts := v.types[typ]
	s := Snapshot{Version: strconv.FormatUint(ts.version, 10), UpdatedAt: ts.updatedAt}
	var entries []*entry
	for n, e := range ts.resources {
		if keep == nil || keep(n) {
			entries = append(entries, e)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(entries, func(a, b *entry) int { return cmp.Compare(a.name, b.name) })
	for _, e := range entries {
		m, err := e.any.UnmarshalNew()
		if err != nil {
			continue // the cache marshalled it: cannot happen
		}
		s.Resources = append(s.Resources, Published{Name: e.name, Version: e.version, Since: e.since, Message: m})
	}
	return s
}

// Has reports whether a view exists and serves a resource.
func (c *Cache) Has(viewName, typ, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.views[viewName]
	if v == nil || !v.exists || v.types[typ] == nil {
		return false
	}
	_, ok := v.types[typ].resources[name]
	return ok
}

// sotwResponse is a state-of-the-world response. Its resources' bytes are
// shared with every other client of the same version; only the small
// response envelope is per client (the server writes the nonce into it).
type sotwResponse struct {
	req     *cachev3.Request
	version string
	entries []*entry
	// What the client holds after this response: the entries alone (full
	// state), or what it held before (prev) with the entries set and the
	// gone names deleted. Server applies that in place; go-control-plane's
	// server gets a new map (GetReturnedResources).
	full bool
	prev map[string]string
	gone []string
	ctx  context.Context

	once sync.Once
	resp *discoveryv3.DiscoveryResponse
}

var _ cachev3.Response = (*sotwResponse)(nil)

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	r.once.Do(func() {
		r.resp = &discoveryv3.DiscoveryResponse{
			VersionInfo: r.version,
			TypeUrl:     r.req.GetTypeUrl(),
			Resources:   make([]*anypb.Any, len(r.entries)),
		}
		for i, e := range r.entries {
			r.resp.Resources[i] = e.any
		}
	})
	return r.resp, nil
}

func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)               { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.version }
func (r *sotwResponse) GetContext() context.Context               { return r.ctx }

// GetReturnedResources returns a new map of what the client holds after
// this response.
func (r *sotwResponse) GetReturnedResources() map[string]string {
	m := make(map[string]string, len(r.prev)+len(r.entries))
	if !r.full {
		maps.Copy(m, r.prev)
	}
	r.applyTo(m)
	return m
}

// applyTo turns m, what the client held, into what it holds after this
// response.
func (r *sotwResponse) applyTo(m map[string]string) {
	if r.full {
		clear(m)
	}
	for _, n := range r.gone {
		delete(m, n)
	}
	for _, e := range r.entries {
		m[e.name] = e.version
	}
}

// deltaResponse is an incremental response.
type deltaResponse struct {
	req      *cachev3.DeltaRequest
	version  string
	entries  []*entry
	removed  []string
	returned map[string]string
	ctx      context.Context

	once sync.Once
	resp *discoveryv3.DeltaDiscoveryResponse
}

var _ cachev3.DeltaResponse = (*deltaResponse)(nil)

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	r.once.Do(func() {
		r.resp = &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: r.version,
			TypeUrl:           r.req.GetTypeUrl(),
			RemovedResources:  r.removed,
			Resources:         make([]*discoveryv3.Resource, len(r.entries)),
		}
		for i, e := range r.entries {
			r.resp.Resources[i] = e.delta
		}
	})
	return r.resp, nil
}

func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                   { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                          { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string                { return r.returned }
func (r *deltaResponse) GetReturnedResources() map[string]string             { return r.returned }
func (r *deltaResponse) GetContext() context.Context                         { return r.ctx }
