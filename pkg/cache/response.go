package cache

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// versionKey is the key, in a delta client's returned-versions map, under
// which the cache notes the type version its last response brought the
// client up to. No resource has an empty name, and go-control-plane's
// server keeps the map as given.
const versionKey = ""

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

func (r *sotwResponse) GetVersion() (string, error) { return r.version, nil }

func (r *sotwResponse) GetResponseVersion() string { return r.version }

func (r *sotwResponse) GetContext() context.Context { return r.ctx }

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

func (r *deltaResponse) GetSystemVersion() (string, error) { return r.version, nil }

func (r *deltaResponse) GetResponseVersion() string { return r.version }

func (r *deltaResponse) GetNextVersionMap() map[string]string { return r.returned }

func (r *deltaResponse) GetReturnedResources() map[string]string { return r.returned }

func (r *deltaResponse) GetContext() context.Context { return r.ctx }
