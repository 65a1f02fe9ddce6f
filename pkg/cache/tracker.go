package cache

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// SyncState says at a glance where a client stands for one type.
type SyncState string

// The sync states.
const (
	// Synced: the client acknowledged the last version sent.
	Synced SyncState = "SYNCED"
	// Stale: a version was sent and is not acknowledged yet.
	Stale SyncState = "STALE"
	// Nacked: the client rejected the last version sent.
	Nacked SyncState = "NACKED"
	// Waiting: the client asked and got nothing yet.
	Waiting SyncState = "WAITING"
)

// Client is one connected xDS stream and its sync state.
type Client struct {
	StreamID    int64     `json:"streamID"`
	NodeID      string    `json:"nodeID"`
	Cluster     string    `json:"cluster"`
	Role        string    `json:"role"`
	View        string    `json:"view,omitempty"`
	Error       string    `json:"error,omitempty"` // why the node gets nothing
	Delta       bool      `json:"delta"`
	ConnectedAt time.Time `json:"connectedAt"`
	// Types is keyed by type URL.
	Types map[string]*TypeSync `json:"types"`
}

// TypeSync is one client's state for one type.
type TypeSync struct {
	State     SyncState `json:"state"`
	Requested time.Time `json:"requested"`
	// Names are the names the client subscribes to (empty: wildcard).
	Names     []string  `json:"names,omitempty"`
	Sent      string    `json:"sent,omitempty"`
	SentAt    time.Time `json:"sentAt,omitzero"`
	SentCount int       `json:"sentCount"`
	Acked     string    `json:"acked,omitempty"`
	AckedAt   time.Time `json:"ackedAt,omitzero"`
	Nacked    string    `json:"nacked,omitempty"`
	NackedAt  time.Time `json:"nackedAt,omitzero"`
	NackCount int       `json:"nackCount"`
	// NackError is the client's error_detail message for Nacked.
	NackError string `json:"nackError,omitempty"`
	// NackedResources are the resources of the rejected response, with
	// the version rejected.
	NackedResources map[string]string `json:"nackedResources,omitempty"`

	sentNonce string
	sentNames map[string]string
}

// Observer is told about what the Tracker sees, for metrics.
type Observer interface {
	// Pushed is called for every response sent; latency is the time
	// from the cache update it delivers to the send, when known.
	Pushed(typ string, latency time.Duration, known bool)
	// Nacked is called for every NACK.
	Nacked(typ string)
	// Clients is called whenever the number of streams changes.
	Clients(n int)
}

// Tracker records every stream's sync state. It implements the
// go-control-plane server's callbacks.
type Tracker struct {
	cache    *Cache
	describe NodeDescriber
	observer Observer
	now      func() time.Time

	mu sync.Mutex
	// clients is keyed by protocol and stream ID: go-control-plane numbers
	// SotW and delta streams separately, so IDs repeat across the two.
	clients map[streamKey]*Client
}

type streamKey struct {
	delta bool
	id    int64
}

// NodeDescriber extracts a node's declared cluster and role, the view it
// reads, and the reason it gets nothing (if it does not).
type NodeDescriber func(*corev3.Node) (cluster, role, view string, err error)

// NewTracker returns a Tracker for the streams served from c.
func NewTracker(c *Cache, describe NodeDescriber, obs Observer) *Tracker {
	return &Tracker{cache: c, describe: describe, observer: obs, now: time.Now, clients: map[streamKey]*Client{}}
}

var _ serverv3.Callbacks = (*Tracker)(nil)

// Clients returns a copy of every stream's state, sorted by node ID then
// stream.
func (t *Tracker) Clients() []Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Client, 0, len(t.clients))
	for _, c := range t.clients {
		cp := *c
		cp.Types = make(map[string]*TypeSync, len(c.Types))
		for k, v := range c.Types {
			ts := *v
			ts.Names = slices.Clone(v.Names)
			ts.NackedResources = maps.Clone(v.NackedResources)
			cp.Types[k] = &ts
		}
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Client) int {
		switch {
		case a.NodeID < b.NodeID:
			return -1
		case a.NodeID > b.NodeID:
			return 1
		}
		return int(a.StreamID - b.StreamID)
	})
	return out
}

func (t *Tracker) open(id int64, delta bool) error {
	t.mu.Lock()
	t.clients[streamKey{delta, id}] = &Client{StreamID: id, Delta: delta, ConnectedAt: t.now(), Types: map[string]*TypeSync{}}
	n := len(t.clients)
	t.mu.Unlock()
	if t.observer != nil {
		t.observer.Clients(n)
	}
	return nil
}

func (t *Tracker) close(id int64, delta bool) {
	t.mu.Lock()
	delete(t.clients, streamKey{delta, id})
	n := len(t.clients)
	t.mu.Unlock()
	if t.observer != nil {
		t.observer.Clients(n)
	}
}

// request records a request: the node (first time), an ACK or a NACK of
// the last response sent.
// names is the full subscription for SotW (nil: unchanged); for delta,
// names and unsubscribe change the subscription.
func (t *Tracker) request(k streamKey, node *corev3.Node, typ, nonce string, names, unsubscribe []string, errDetail string, isErr bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[k]
	if c == nil {
		return
	}
	if node != nil && c.NodeID == "" {
		c.NodeID = node.GetId()
		var err error
		c.Cluster, c.Role, c.View, err = t.describe(node)
		if err != nil {
			c.Error = err.Error()
		}
	}
	ts := c.Types[typ]
	if ts == nil {
		ts = &TypeSync{State: Waiting}
		c.Types[typ] = ts
	}
	now := t.now()
	ts.Requested = now
	switch {
	case !k.delta && names != nil:
		ts.Names = slices.Clone(names)
	case k.delta:
		for _, n := range names {
			if n != "*" && !slices.Contains(ts.Names, n) {
				ts.Names = append(ts.Names, n)
			}
		}
		ts.Names = slices.DeleteFunc(ts.Names, func(n string) bool { return slices.Contains(unsubscribe, n) })
		slices.Sort(ts.Names)
	}
	if nonce == "" || nonce != ts.sentNonce {
		return
	}
	if isErr {
		ts.State, ts.Nacked, ts.NackedAt, ts.NackError = Nacked, ts.Sent, now, errDetail
		ts.NackCount++
		ts.NackedResources = maps.Clone(ts.sentNames)
		if t.observer != nil {
			t.observer.Nacked(typ)
		}
		return
	}
	ts.State, ts.Acked, ts.AckedAt = Synced, ts.Sent, now
}

func (t *Tracker) response(k streamKey, typ, version, nonce string, names map[string]string, ctx context.Context) {
	t.mu.Lock()
	c := t.clients[k]
	if c == nil {
		t.mu.Unlock()
		return
	}
	ts := c.Types[typ]
	if ts == nil {
		ts = &TypeSync{}
		c.Types[typ] = ts
	}
	now := t.now()
	ts.State, ts.Sent, ts.SentAt, ts.sentNonce, ts.sentNames = Stale, version, now, nonce, names
	ts.SentCount++
	t.mu.Unlock()
	if t.observer != nil {
		at, ok := UpdatedAt(ctx)
		t.observer.Pushed(typ, now.Sub(at), ok)
	}
}

// OnStreamOpen implements serverv3.Callbacks.
func (t *Tracker) OnStreamOpen(_ context.Context, id int64, _ string) error { return t.open(id, false) }

// OnStreamClosed implements serverv3.Callbacks.
func (t *Tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.close(id, false) }

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (t *Tracker) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	return t.open(id, true)
}

// OnDeltaStreamClosed implements serverv3.Callbacks.
func (t *Tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.close(id, true) }

// OnStreamRequest implements serverv3.Callbacks.
func (t *Tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	names := req.GetResourceNames()
	if names == nil {
		names = []string{}
	}
	t.request(streamKey{false, id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), names, nil, req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

// OnStreamResponse implements serverv3.Callbacks.
func (t *Tracker) OnStreamResponse(ctx context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	var names map[string]string
	if sent := t.cache.responseNames(resp); sent != nil {
		names = make(map[string]string, len(sent))
		for _, n := range sent {
			names[n] = resp.GetVersionInfo()
		}
	}
	t.response(streamKey{false, id}, req.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), names, ctx)
}

// OnStreamDeltaRequest implements serverv3.Callbacks.
func (t *Tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	t.request(streamKey{true, id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

// OnStreamDeltaResponse implements serverv3.Callbacks.
func (t *Tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	names := make(map[string]string, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		names[r.GetName()] = r.GetVersion()
	}
	ctx := context.Background()
	t.mu.Lock()
	view := ""
	if c := t.clients[streamKey{true, id}]; c != nil {
		view = c.View
	}
	t.mu.Unlock()
	if at, ok := t.cache.VersionTime(view, req.GetTypeUrl(), resp.GetSystemVersionInfo()); ok {
		ctx = context.WithValue(ctx, ctxKey{}, at)
	}
	t.response(streamKey{true, id}, req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), names, ctx)
}

// OnFetchRequest implements serverv3.Callbacks.
func (t *Tracker) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

// OnFetchResponse implements serverv3.Callbacks.
func (t *Tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
