package cache

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/eastwest-dev/eastwest/internal/ratelog"
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
	// Peer is the client's address and, over mutual TLS, the identities
	// its certificate proves.
	Peer Peer `json:"peer"`
	// Types is keyed by type URL.
	Types map[string]*TypeSync `json:"types"`

	node    *corev3.Node
	auth    Authorizer
	defType string
	// peerKey is who opened the stream, for MaxStreamsPerPeer.
	peerKey string
}

// UnservedState is the summary of a connected client the control plane
// serves nothing, and says why (Client.Error): its cluster is not a member
// (yet), or its Gateway is not programmed. It is not a refusal: refused
// requests end their stream and are listed by Tracker.Refusals.
const UnservedState SyncState = "UNSERVED"

// Summary is a client's state in one word: UNSERVED, NACKED when any type
// is, else STALE when any type is behind, else WAITING when any type has
// not been answered, else SYNCED.
func (c Client) Summary() SyncState {
	if c.Error != "" {
		return UnservedState
	}
	state := Synced
	for _, ts := range c.Types {
		switch {
		case ts.State == Nacked:
			return Nacked
		case ts.State == Stale:
			state = Stale
		case ts.State == Waiting && state == Synced:
			state = Waiting
		}
	}
	return state
}

// Peer is who is at the other end of a stream, as far as the transport
// proves it.
type Peer struct {
	Address string `json:"address,omitempty"`
	// Identities are the URI SANs of the client's verified certificate;
	// empty without mutual TLS.
	Identities []string `json:"identities,omitempty"`
}

// Authorizer decides whether one stream's client may be served a node's
// view and a type; an error (best a *Refusal) refuses the request and
// ends the stream.
type Authorizer func(node *corev3.Node, typ string) error

// Authenticator makes the Authorizer of a stream (or unary call) from its
// context: the peer's address and verified certificate.
type Authenticator func(ctx context.Context) (Peer, Authorizer)

// Refused is a stream or call the control plane refused, as `xds status`
// shows it.
type Refused struct {
	At     time.Time `json:"at"`
	NodeID string    `json:"nodeID"`
	// Cluster and Role are what the node claimed.
	Cluster string `json:"cluster"`
	Role    string `json:"role,omitempty"`
	Peer    Peer   `json:"peer"`
	Reason  string `json:"reason"`
	Error   string `json:"error"`
}

// refusedKept bounds the refusals the Tracker remembers.
const refusedKept = 64

// TypeSync is one client's state for one type.
type TypeSync struct {
	State     SyncState `json:"state"`
	Requested time.Time `json:"requested"`
	// Names are the names the client subscribes to (empty: wildcard).
	Names []string `json:"names,omitempty"`
	// NameCount is len(Names): /debug/syncz shows the count alone.
	NameCount int       `json:"nameCount,omitempty"`
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
	// sent is what the last response carried; NackedResources is made
	// from it only when the client rejects it (most never do).
	sent sentResources
	// subscribed is a delta client's subscription (Names is made from it
	// when the state is read: keeping a sorted list current would cost
	// O(names) per subscribed name).
	subscribed map[string]struct{}
	// nameBytes are the bytes of the names subscribed (MaxStreamNameBytes).
	nameBytes int
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
	// Refused is called for every refused request, with its reason.
	Refused(reason string)
}

// Tracker records every stream's sync state. It implements the
// go-control-plane server's callbacks.
type Tracker struct {
	cache        *Cache
	describe     NodeDescriber
	observer     Observer
	authenticate Authenticator
	log          *ratelog.Logger
	now          func() time.Time

	mu sync.Mutex
	// clients is keyed by protocol and stream ID: go-control-plane numbers
	// SotW and delta streams separately, so IDs repeat across the two.
	clients map[streamKey]*Client
	refused []Refused
	// peers counts the open streams per peer (peerKey), and peerBytes
	// the bytes of the names they subscribe to.
	peers     map[string]int
	peerBytes map[string]int
}

type streamKey struct {
	delta bool
	id    int64
}

// NodeDescriber extracts a node's declared cluster and role, the view it
// reads, and the reason it gets nothing (if it does not). It has no side
// effects: the Tracker calls it again whenever it shows the client.
type NodeDescriber func(*corev3.Node) (cluster, role, view string, err error)

// NewTracker returns a Tracker for the streams served from c. Before
// serving, Authenticate may set how streams are authorized (by default
// every client is trusted with the node it claims).
func NewTracker(c *Cache, describe NodeDescriber, obs Observer) *Tracker {
	return &Tracker{cache: c, describe: describe, observer: obs, now: time.Now, clients: map[streamKey]*Client{}, peers: map[string]int{}, peerBytes: map[string]int{}}
}

// Authenticate sets how the Tracker authorizes streams, and the logger
// its refusals go to (rate-limited). Call it before serving.
func (t *Tracker) Authenticate(a Authenticator, log *ratelog.Logger) {
	t.authenticate, t.log = a, log
}

// Refusals returns the most recent refused requests, oldest first.
func (t *Tracker) Refusals() []Refused {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Refused, len(t.refused))
	for i, r := range t.refused {
		out[i] = r
		out[i].Peer.Identities = slices.Clone(r.Peer.Identities)
	}
	return out
}

// refuse records and returns a refusal of a request from node (which may
// be nil) on a stream from peer. Called with t.mu held.
func (t *Tracker) refuse(node *corev3.Node, peer Peer, err error) error {
	var r *Refusal
	if !errors.As(err, &r) {
		r = Refuse(ReasonIdentity, codes.PermissionDenied, "%s", err.Error())
	}
	// What the client sent is kept cut short: a refused client's node
	// ID, cluster, role and identities are its own to make large.
	rec := Refused{At: t.now(), NodeID: shown(node.GetId()), Cluster: shown(node.GetCluster()), Reason: r.Reason, Error: r.Msg}
	if len(rec.Error) > 4*maxShown {
		rec.Error = rec.Error[:4*maxShown] + "..."
	}
	rec.Peer = Peer{Address: peer.Address}
	for _, id := range peer.Identities[:min(len(peer.Identities), 8)] {
		rec.Peer.Identities = append(rec.Peer.Identities, shown(id))
	}
	if role := node.GetMetadata().GetFields()["role"]; role != nil {
		rec.Role = shown(role.GetStringValue())
	}
	if len(t.refused) == refusedKept {
		t.refused = slices.Delete(t.refused, 0, 1)
	}
	t.refused = append(t.refused, rec)
	if t.observer != nil {
		t.observer.Refused(r.Reason)
	}
	t.log.Warn("refuse:"+r.Reason, "xDS request refused", "node", rec.NodeID, "cluster", rec.Cluster, "peer", peer.Address, "identities", rec.Peer.Identities, "reason", r.Reason, "err", rec.Error)
	return r
}

var _ serverv3.Callbacks = (*Tracker)(nil)

// Clients returns a copy of every stream's state, sorted by node ID then
// stream. Why a node gets nothing is asked again: a node that waited (for
// its cluster to join, or the first publish) may be served now.
func (t *Tracker) Clients() []Client { return t.clientsCopy(true) }

// Summaries is Clients with the count of the names each stream subscribes
// to, not the names (/debug/syncz): copying and sorting 100,000 names a
// stream made that page take seconds.
func (t *Tracker) Summaries() []Client { return t.clientsCopy(false) }

func (t *Tracker) clientsCopy(names bool) []Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Client, 0, len(t.clients))
	for _, c := range t.clients {
		if c.Error != "" && c.node != nil && t.describe != nil {
			if _, _, view, err := t.describe(c.node); err == nil {
				c.Error, c.View = "", view
			} else {
				c.Error = err.Error()
			}
		}
		cp := *c
		cp.node, cp.auth = nil, nil
		cp.Peer.Identities = slices.Clone(c.Peer.Identities)
		cp.Types = make(map[string]*TypeSync, len(c.Types))
		for k, v := range c.Types {
			ts := *v
			ts.NameCount = len(v.Names)
			if v.subscribed != nil {
				ts.NameCount = len(v.subscribed)
			}
			ts.Names = nil
			switch {
			case names && v.subscribed != nil:
				ts.Names = slices.Sorted(maps.Keys(v.subscribed))
			case names:
				ts.Names = slices.Clone(v.Names)
			}
			ts.subscribed, ts.sent = nil, sentResources{}
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

func (t *Tracker) open(ctx context.Context, id int64, delta bool, typ string) error {
	c := &Client{StreamID: id, Delta: delta, ConnectedAt: t.now(), Types: map[string]*TypeSync{}, defType: typ}
	if t.authenticate != nil {
		c.Peer, c.auth = t.authenticate(ctx)
	}
	t.mu.Lock()
	c.peerKey = peerKey(c.Peer)
	if n := t.peers[c.peerKey]; n >= MaxStreamsPerPeer && !onHost(c.Peer) {
		err := t.refuse(nil, c.Peer, Refuse(ReasonTooManyStreams, codes.ResourceExhausted, "%d streams already open from this peer (%s): at most %d", n, shown(c.peerKey), MaxStreamsPerPeer))
		t.mu.Unlock()
		return err
	}
	t.peers[c.peerKey]++
	t.clients[streamKey{delta, id}] = c
	n := len(t.clients)
	t.mu.Unlock()
	if t.observer != nil {
		t.observer.Clients(n)
	}
	return nil
}

// peerKey is who a peer is, for MaxStreamsPerPeer: its certificate's
// identities, else its IP address.
func peerKey(p Peer) string {
	if len(p.Identities) > 0 {
		return strings.Join(p.Identities, ",")
	}
	if host, _, err := net.SplitHostPort(p.Address); err == nil {
		return host
	}
	return p.Address
}

// onHost reports whether a peer is this host's own (loopback, or not
// known: a Tracker without an Authenticator): the demo, the xds CLI, the
// load harness with its hundred streams. No pod reaches the control plane
// over loopback. MaxStreamsPerPeer does not apply to it; the bytes of
// its names do.
func onHost(p Peer) bool {
	if len(p.Identities) > 0 {
		return false
	}
	host, _, err := net.SplitHostPort(p.Address)
	if err != nil {
		return p.Address == ""
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (t *Tracker) close(id int64, delta bool) {
	t.mu.Lock()
	if c := t.clients[streamKey{delta, id}]; c != nil {
		if t.peers[c.peerKey]--; t.peers[c.peerKey] <= 0 {
			delete(t.peers, c.peerKey)
		}
		if t.peerBytes[c.peerKey] -= c.nameBytes(); t.peerBytes[c.peerKey] <= 0 {
			delete(t.peerBytes, c.peerKey)
		}
	}
	delete(t.clients, streamKey{delta, id})
	n := len(t.clients)
	t.mu.Unlock()
	if t.observer != nil {
		t.observer.Clients(n)
	}
}

// request checks and records a request: the node (first time), an ACK
// or a NACK of the last response sent. names is the full subscription
// for SotW (nil: unchanged); for delta, names and unsubscribe change the
// subscription. It refuses (and the server ends the stream) a type the
// cache does not serve, a subscription beyond the limits, a node that
// changes within the stream, and what the stream's Authorizer refuses:
// this runs before the server asks the cache, so the cache keeps nothing
// for a refused request.
func (t *Tracker) request(k streamKey, node *corev3.Node, typ, nonce string, names, unsubscribe []string, errDetail string, isErr bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[k]
	if c == nil {
		return nil
	}
	if typ == "" {
		typ = c.defType // a delta stream of one type
	}
	ts := c.Types[typ]
	if err := t.check(c, k.delta, ts, node, typ, names); err != nil {
		return err
	}
	if node != nil && c.node == nil {
		c.node = node
		c.NodeID = node.GetId()
		var err error
		c.Cluster, c.Role, c.View, err = t.describe(node)
		if err != nil {
			c.Error = err.Error()
			t.log.Warn("node-waits", "xDS client gets nothing (yet)", "node", c.NodeID, "cluster", c.Cluster, "role", c.Role, "reason", err)
		}
	}
	if ts == nil {
		ts = &TypeSync{State: Waiting}
		c.Types[typ] = ts
	}
	now := t.now()
	ts.Requested = now
	was := ts.nameBytes
	defer func() { t.peerBytes[c.peerKey] += ts.nameBytes - was }()
	switch {
	case !k.delta && names != nil && !slices.Equal(ts.Names, names):
		// Every SotW ACK repeats the whole subscription: copy it only
		// when it changed.
		ts.Names = slices.Clone(names)
		ts.nameBytes = 0
		for _, n := range names {
			ts.nameBytes += len(n)
		}
	case k.delta:
		if ts.subscribed == nil {
			ts.subscribed = make(map[string]struct{}, len(names))
		}
		for _, n := range names {
			if _, ok := ts.subscribed[n]; !ok && n != "*" {
				ts.subscribed[n] = struct{}{}
				ts.nameBytes += len(n)
			}
		}
		for _, n := range unsubscribe {
			if _, ok := ts.subscribed[n]; ok {
				delete(ts.subscribed, n)
				ts.nameBytes -= len(n)
			}
		}
	}
	if nonce == "" || nonce != ts.sentNonce {
		return nil
	}
	if isErr {
		ts.State, ts.Nacked, ts.NackedAt, ts.NackError = Nacked, ts.Sent, now, errDetail
		ts.NackCount++
		ts.NackedResources = ts.sent.names()
		if t.observer != nil {
			t.observer.Nacked(typ)
		}
		return nil
	}
	ts.State, ts.Acked, ts.AckedAt = Synced, ts.Sent, now
	return nil
}

// sentResources is what a response carried: a delta response's
// resources, or a SotW response's names at its version.
type sentResources struct {
	delta   []*discoveryv3.Resource
	sotw    []*entry
	version string
}

// names maps each resource sent to its version (nil when none).
func (s sentResources) names() map[string]string {
	if s.delta == nil && s.sotw == nil {
		return nil
	}
	out := make(map[string]string, len(s.delta)+len(s.sotw))
	for _, r := range s.delta {
		out[r.GetName()] = r.GetVersion()
	}
	for _, e := range s.sotw {
		out[e.name] = s.version
	}
	return out
}

// response records a response sent. updatedAt, when known, is when the
// update it delivers was applied (the push-latency metric); for a delta
// response (whose callback has no context) it is looked up by version in
// the cache.
func (t *Tracker) response(k streamKey, typ, version, nonce string, sent sentResources, updatedAt time.Time, known bool) {
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
	ts.State, ts.Sent, ts.SentAt, ts.sentNonce, ts.sent = Stale, version, now, nonce, sent
	ts.SentCount++
	view := c.View
	t.mu.Unlock()
	if t.observer == nil {
		return
	}
	if !known && k.delta {
		updatedAt, known = t.cache.VersionTime(view, typ, version)
	}
	t.observer.Pushed(typ, now.Sub(updatedAt), known)
}

// check refuses a request (and records why) for a type the cache does
// not serve, a node that changes within its stream, what the stream's
// Authorizer refuses, and a subscription beyond the limits. Called with
// t.mu held.
func (t *Tracker) check(c *Client, delta bool, ts *TypeSync, node *corev3.Node, typ string, names []string) error {
	claimed := c.node
	if node != nil {
		claimed = node
	}
	if err := CheckType(typ); err != nil {
		return t.refuse(claimed, c.Peer, err)
	}
	if node != nil && c.node == nil {
		if err := CheckNode(node); err != nil {
			return t.refuse(node, c.Peer, err)
		}
	}
	if node != nil && c.node != nil && !proto.Equal(node, c.node) {
		return t.refuse(node, c.Peer, Refuse(ReasonNodeChanged, codes.InvalidArgument, "node %q: a stream's node cannot change (it was %q of cluster %q)", node.GetId(), c.node.GetId(), c.node.GetCluster()))
	}
	if c.auth != nil {
		if err := c.auth(claimed, typ); err != nil {
			return t.refuse(claimed, c.Peer, err)
		}
	}
	total := 0
	if delta && ts != nil {
		total = len(ts.subscribed) + len(names)
	}
	// The stream's other subscriptions, and for delta this one's names
	// so far (a SotW request replaces its type's names).
	held := 0
	for other, o := range c.Types {
		if other != typ || delta {
			held += o.nameBytes
		}
	}
	if err := CheckNames(names, total, held); err != nil {
		return t.refuse(claimed, c.Peer, err)
	}
	after := held
	for _, n := range names {
		after += len(n)
	}
	if peer := t.peerBytes[c.peerKey] - c.nameBytes() + after; peer > MaxPeerNameBytes {
		return t.refuse(claimed, c.Peer, Refuse(ReasonTooManyNames, codes.ResourceExhausted,
			"subscriptions of %d bytes of resource names over this peer's streams (%s): at most %d", peer, shown(c.peerKey), MaxPeerNameBytes))
	}
	return nil
}

// nameBytes are the bytes of the names a stream subscribes to.
func (c *Client) nameBytes() int {
	n := 0
	for _, ts := range c.Types {
		n += ts.nameBytes
	}
	return n
}

// OnStreamOpen implements serverv3.Callbacks.
func (t *Tracker) OnStreamOpen(ctx context.Context, id int64, typ string) error {
	return t.open(ctx, id, false, typ)
}

// OnStreamClosed implements serverv3.Callbacks.
func (t *Tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.close(id, false) }

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (t *Tracker) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	return t.open(ctx, id, true, typ)
}

// OnDeltaStreamClosed implements serverv3.Callbacks.
func (t *Tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.close(id, true) }

// OnStreamRequest implements serverv3.Callbacks.
func (t *Tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	names := req.GetResourceNames()
	if names == nil {
		names = []string{}
	}
	return t.request(streamKey{false, id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), names, nil, req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}

// OnStreamResponse implements serverv3.Callbacks.
func (t *Tracker) OnStreamResponse(ctx context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	info := responseInfoOf(ctx)
	var sent sentResources
	if info != nil {
		sent = sentResources{sotw: info.entries, version: resp.GetVersionInfo()}
	}
	at, ok := info.at()
	t.response(streamKey{false, id}, req.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), sent, at, ok)
}

// OnStreamDeltaRequest implements serverv3.Callbacks.
func (t *Tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	return t.request(streamKey{true, id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}

// OnStreamDeltaResponse implements serverv3.Callbacks.
func (t *Tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.response(streamKey{true, id}, req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), sentResources{delta: resp.GetResources()}, time.Time{}, false)
}

// OnFetchRequest implements serverv3.Callbacks: a unary request is
// checked as a stream's is.
func (t *Tracker) OnFetchRequest(ctx context.Context, req *discoveryv3.DiscoveryRequest) error {
	var peer Peer
	var auth Authorizer
	if t.authenticate != nil {
		peer, auth = t.authenticate(ctx)
	}
	err := CheckType(req.GetTypeUrl())
	if err == nil {
		err = CheckNames(req.GetResourceNames(), 0, 0)
	}
	if err == nil {
		err = CheckNode(req.GetNode())
	}
	if err == nil && auth != nil {
		err = auth(req.GetNode(), req.GetTypeUrl())
	}
	if err == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refuse(req.GetNode(), peer, err)
}

// OnFetchResponse implements serverv3.Callbacks.
func (t *Tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
