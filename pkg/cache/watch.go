package cache

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

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

// CreateWatch answers a SotW request now if the client lacks something,
// else when something it subscribes to changes.
func (c *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	return c.CreateSotWWatch(req, sub, out, false, false)
}

// CreateSotWWatch is CreateWatch for eastwest's SotW server (the seam
// between the server, sotw.go, and the cache: SotWWatcher), which also
// says whether the request changed the subscription's names. A first request,
// and a changed subscription of a full-state type (LDS, CDS), are
// answered even when nothing the client holds changed: such a response
// lists every subscribed resource that exists, which is how the client
// learns the server saw its new names (xDS protocol: LDS and CDS
// responses include every requested resource). An ACK that repeats the
// names waits for a change.
func (c *Cache) CreateSotWWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response, namesChanged, again bool) (func(), error) {
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
	if !v.exists && c.onMissing != nil {
		c.onMissing()
	}
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

func (f fetchSubscription) IsWildcard() bool { return len(f) == 0 }

func (f fetchSubscription) SubscribedResources() map[string]struct{} {
	out := make(map[string]struct{}, len(f))
	for _, n := range f {
		out[n] = struct{}{}
	}
	return out
}
