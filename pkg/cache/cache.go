package cache

import (
	"cmp"
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
	// onMissing is told when a client waits for a view that does not
	// exist (OnMissing).
	onMissing func()

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

// OnMissing sets fn, called whenever a client starts waiting for a view
// that does not exist: whoever makes views may make it (Missing lists
// them). fn is called with the cache locked: it must neither block nor
// call the cache.
func (c *Cache) OnMissing(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onMissing = fn
}

// Missing returns the views clients wait for that do not exist, sorted.
func (c *Cache) Missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name, v := range c.views {
		if !v.exists && v.watches > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
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
