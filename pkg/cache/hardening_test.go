package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/eastwest-dev/eastwest/internal/ratelog"
)

// A stream whose response channel is full (a client that does not read)
// holds up nothing: Apply returns, the other streams get the update, and
// the stuck stream gets it once it takes its earlier response.
func TestFullChannelBlocksNobody(t *testing.T) {
	c := newCache(t)
	stuck := make(chan cachev3.DeltaResponse, 1)
	stuck <- &deltaResponse{} // the stream never read this one
	req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: resourcev3.ClusterType}
	if _, err := c.CreateDeltaWatch(req, streamv3.NewDeltaSubscription(nil, nil, nil, true), stuck); err != nil {
		t.Fatal(err)
	}
	other := newDelta(t, c, resourcev3.ClusterType)
	other.receive()
	other.request(nil, nil)

	done := make(chan struct{})
	go func() {
		apply(t, c, resourcev3.ClusterType, []Resource{cluster("a")})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Apply is blocked by a stream that does not read")
	}
	if set, _ := deltaNames(other.receive()); !slices.Equal(set, []string{"a"}) {
		t.Fatalf("the other stream got %v, want [a]", set)
	}
	if got := c.Resources(testView, resourcev3.ClusterType); len(got.Resources) != 1 {
		t.Fatalf("the cache is not readable while a stream is stuck: %v", got)
	}
	<-stuck // the stream reads at last
	select {
	case r := <-stuck:
		resp, _ := r.GetDeltaDiscoveryResponse()
		if set, _ := deltaNames(resp); !slices.Equal(set, []string{"a"}) {
			t.Errorf("the unstuck stream got %v, want [a]", set)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream that read again never got the update")
	}
}

// Type URLs the cache does not serve are refused with a gRPC status,
// and leave no state behind, however many a client sends.
func TestUnsupportedTypesRefusedAndNotKept(t *testing.T) {
	c := New(nodeView)
	for i := range 2000 {
		typ := fmt.Sprintf("type.googleapis.com/junk.%d.%s", i, strings.Repeat("x", 1000))
		req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Cluster: "nowhere"}, TypeUrl: typ}
		_, err := c.CreateDeltaWatch(req, streamv3.NewDeltaSubscription(nil, nil, nil, true), make(chan cachev3.DeltaResponse, 20))
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("type %d: err %v, want InvalidArgument", i, err)
		}
		sreq := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "nowhere"}, TypeUrl: typ}
		if _, err := c.CreateWatch(sreq, streamv3.NewSotwSubscription(nil, true), make(chan cachev3.Response, 1)); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("SotW type %d: err %v", i, err)
		}
		if _, err := c.Fetch(context.Background(), sreq); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Fetch type %d: err %v", i, err)
		}
	}
	if n := len(c.views); n != 0 {
		t.Errorf("%d views kept for refused requests", n)
	}
}

// Subscriptions beyond the limits are refused.
func TestNameLimits(t *testing.T) {
	c := newCache(t)
	tests := map[string]struct {
		names []string
		code  codes.Code
	}{
		"too many names":    {names: make([]string, MaxNames+1), code: codes.ResourceExhausted},
		"name too long":     {names: []string{strings.Repeat("n", MaxNameLength+1)}, code: codes.InvalidArgument},
		"at the limits ok":  {names: []string{strings.Repeat("n", MaxNameLength)}, code: codes.OK},
		"wildcard is fine":  {names: nil, code: codes.OK},
		"a few names is ok": {names: []string{"a", "b"}, code: codes.OK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for i := range tc.names {
				if tc.names[i] == "" {
					tc.names[i] = fmt.Sprint("n", i)
				}
			}
			req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: resourcev3.EndpointType, ResourceNames: tc.names}
			cancel, err := c.CreateWatch(req, streamv3.NewSotwSubscription(tc.names, true), make(chan cachev3.Response, 1))
			if status.Code(err) != tc.code {
				t.Fatalf("err %v, want %v", err, tc.code)
			}
			if cancel != nil {
				cancel()
			}
		})
	}
}

// The state a client makes by claiming a view that is not one (a cluster
// that is not a member) goes when its stream cancels its watches; a view
// of that name made later does not take an old client's version for its
// own.
func TestClaimedViewFreedWithItsLastWatch(t *testing.T) {
	c := newCache(t)
	var cancels []func()
	for i := range 1000 {
		req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Cluster: fmt.Sprint("claimed-", i)}, TypeUrl: resourcev3.ClusterType}
		cancel, err := c.CreateDeltaWatch(req, streamv3.NewDeltaSubscription(nil, nil, nil, true), make(chan cachev3.DeltaResponse, 20))
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	if n := len(c.views); n != 1001 {
		t.Fatalf("%d views while the streams are open, want 1001", n)
	}
	for _, cancel := range cancels {
		cancel()
	}
	if n := len(c.views); n != 1 {
		t.Errorf("%d views after the streams ended, want only the real one", n)
	}

	// A real view that goes away while a client waits on it, then comes
	// back: the client's old version is not the new view's.
	s := newSotw(t, c, resourcev3.ClusterType)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a")})
	s.receive()
	old := s.last.VersionInfo
	s.stop()
	c.SetViews(nil)
	if _, ok := c.views[testView]; ok {
		t.Fatal("a removed view without watches or resources was kept")
	}
	c.SetViews([]string{testView})
	apply(t, c, resourcev3.ClusterType, []Resource{{Name: "b", Message: cluster("b").Message}})
	ts := c.views[testView].types[resourcev3.ClusterType]
	if fmt.Sprint(ts.version) == old {
		t.Fatalf("the new view reuses version %s", old)
	}
	s.stop = nil
	s.request(nil) // an ACK of the old view's version
	if got := names(s.receive()); !slices.Equal(got, []string{"b"}) {
		t.Errorf("a client holding the old view's version got %v, want [b]", got)
	}
}

// Unary Fetch keeps nothing per call: a long loop of them does not grow
// the heap.
func TestFetchKeepsNothing(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a"), cluster("b")})
	fetch := func(n int) {
		for range n {
			resp, err := c.Fetch(context.Background(), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: resourcev3.ClusterType})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := resp.GetDiscoveryResponse(); err != nil {
				t.Fatal(err)
			}
		}
	}
	fetch(1000)
	before := heap()
	fetch(100_000)
	if grew := int64(heap()) - int64(before); grew > 4<<20 {
		t.Errorf("100,000 Fetch calls grew the heap by %d bytes", grew)
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The Tracker refuses, before the cache sees the request, what the cache
// will not serve, a node that changes within a stream, and what the
// stream's Authorizer refuses; each refusal is counted, remembered with
// its reason, and a gRPC status.
func TestTrackerRefusals(t *testing.T) {
	c := newCache(t)
	obs := &countingObserver{}
	tr := NewTracker(c, func(n *corev3.Node) (string, string, string, error) {
		return n.GetCluster(), "gateway", n.GetCluster() + "/gateway", nil
	}, obs)
	tr.Authenticate(func(context.Context) (Peer, Authorizer) {
		return Peer{Address: "10.0.0.1:1234", Identities: []string{"spiffe://x/east"}}, func(n *corev3.Node, typ string) error {
			if n.GetCluster() != "east" {
				return Refuse(ReasonIdentity, codes.PermissionDenied, "identity is east, node claims %s", n.GetCluster())
			}
			if typ == resourcev3.SecretType {
				return Refuse(ReasonSecrets, codes.PermissionDenied, "no secrets")
			}
			return nil
		}
	}, nil)
	role := &structpb.Struct{Fields: map[string]*structpb.Value{"role": structpb.NewStringValue("gateway")}}
	east := &corev3.Node{Id: "e", Cluster: "east", Metadata: role}
	tests := map[string]struct {
		reqs   []*discoveryv3.DeltaDiscoveryRequest
		reason string
		code   codes.Code
	}{
		"allowed": {reqs: []*discoveryv3.DeltaDiscoveryRequest{{Node: east, TypeUrl: resourcev3.ClusterType}}},
		"unsupported type": {reqs: []*discoveryv3.DeltaDiscoveryRequest{{Node: east, TypeUrl: "type.googleapis.com/made.Up"}},
			reason: ReasonUnsupportedType, code: codes.InvalidArgument},
		"identity of another cluster": {reqs: []*discoveryv3.DeltaDiscoveryRequest{{Node: &corev3.Node{Id: "w", Cluster: "west"}, TypeUrl: resourcev3.ClusterType}},
			reason: ReasonIdentity, code: codes.PermissionDenied},
		"node changes mid-stream": {reqs: []*discoveryv3.DeltaDiscoveryRequest{
			{Node: east, TypeUrl: resourcev3.ClusterType},
			{Node: &corev3.Node{Id: "e", Cluster: "east"}, TypeUrl: resourcev3.EndpointType},
		}, reason: ReasonNodeChanged, code: codes.InvalidArgument},
		"secrets refused": {reqs: []*discoveryv3.DeltaDiscoveryRequest{{Node: east, TypeUrl: resourcev3.SecretType}},
			reason: ReasonSecrets, code: codes.PermissionDenied},
		"delta subscription grows past the limit": {reqs: []*discoveryv3.DeltaDiscoveryRequest{
			{Node: east, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: numbered("a", MaxNames/2+1)},
			{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: numbered("b", MaxNames/2+1)},
		}, reason: ReasonTooManyNames, code: codes.ResourceExhausted},
		// Finding 7 of the trust-boundaries issue: two delta streams of
		// 100,000 names of 1 KB per type held a gigabyte; 100 streams of
		// 3.9 MB node IDs 723 MB.
		"names of a stream past its bytes": {reqs: []*discoveryv3.DeltaDiscoveryRequest{
			{Node: east, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: sized("a", 3000, 1000)},
			{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: sized("b", 3000, 1000)},
		}, reason: ReasonTooManyNames, code: codes.ResourceExhausted},
		"a node past its bytes": {reqs: []*discoveryv3.DeltaDiscoveryRequest{{Node: &corev3.Node{Id: strings.Repeat("n", MaxNodeBytes), Cluster: "east"}, TypeUrl: resourcev3.ClusterType}},
			reason: ReasonNodeTooLarge, code: codes.InvalidArgument},
		"unsubscribed names free their bytes": {reqs: []*discoveryv3.DeltaDiscoveryRequest{
			{Node: east, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: sized("a", 3000, 1000)},
			{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: sized("a", 3000, 1000)},
			{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: sized("b", 3000, 1000)},
		}},
	}
	id := int64(0)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id++
			before := len(obs.refused)
			_ = tr.OnDeltaStreamOpen(context.Background(), id, resourcev3.AnyType)
			defer tr.OnDeltaStreamClosed(id, nil)
			var err error
			for _, r := range tc.reqs {
				if err = tr.OnStreamDeltaRequest(id, r); err != nil {
					break
				}
			}
			if status.Code(err) != tc.code {
				t.Fatalf("err %v, want %v", err, tc.code)
			}
			if tc.reason == "" {
				if len(obs.refused) != before {
					t.Errorf("an allowed request was counted as refused: %v", obs.refused[before:])
				}
				return
			}
			if got := obs.refused[before:]; !slices.Equal(got, []string{tc.reason}) {
				t.Errorf("refusals counted %v, want [%s]", got, tc.reason)
			}
			last := tr.Refusals()[len(tr.Refusals())-1]
			var r *Refusal
			if !errors.As(err, &r) || last.Reason != tc.reason || last.Error != r.Msg || last.Peer.Address != "10.0.0.1:1234" {
				t.Errorf("remembered %+v for %v", last, err)
			}
		})
	}
	// Unary calls are checked as streams are.
	err := tr.OnFetchRequest(context.Background(), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "west"}, TypeUrl: resourcev3.ClusterType})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Fetch as another cluster: %v", err)
	}
}

// sized is n names of about size bytes each.
func sized(prefix string, n, size int) []string {
	out := make([]string, n)
	for i := range out {
		name := fmt.Sprint(prefix, i, "-")
		out[i] = name + strings.Repeat("x", size-len(name))
	}
	return out
}

// One peer holds at most MaxStreamsPerPeer streams at once (by its
// identities, else its IP address); closing one makes room, and other
// peers are not held up. The refusal keeps only the start of what the
// client sent.
func TestStreamsPerPeer(t *testing.T) {
	c := New(nodeView)
	obs := &countingObserver{}
	tr := NewTracker(c, nil, obs)
	peerOf := func(ctx context.Context) (Peer, Authorizer) { return ctx.Value(peerCtx{}).(Peer), nil }
	tr.Authenticate(peerOf, ratelog.New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second, 5))
	long := strings.Repeat("i", 100_000)
	a := context.WithValue(context.Background(), peerCtx{}, Peer{Address: "10.0.0.1:1", Identities: []string{long}})
	b := context.WithValue(context.Background(), peerCtx{}, Peer{Address: "10.0.0.2:2"})
	loop := context.WithValue(context.Background(), peerCtx{}, Peer{Address: "127.0.0.1:3"})
	for i := range MaxStreamsPerPeer + 10 {
		if err := tr.OnDeltaStreamOpen(loop, int64(2000+i), resourcev3.AnyType); err != nil {
			t.Fatalf("loopback stream %d (the host's own: the demo, the load harness): %v", i, err)
		}
	}
	for i := range MaxStreamsPerPeer {
		if err := tr.OnDeltaStreamOpen(a, int64(i), resourcev3.AnyType); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if err := tr.OnDeltaStreamOpen(a, 1000, resourcev3.AnyType); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream %d of one peer: %v, want ResourceExhausted", MaxStreamsPerPeer+1, err)
	}
	if err := tr.OnDeltaStreamOpen(b, 1001, resourcev3.AnyType); err != nil {
		t.Errorf("another peer is held up: %v", err)
	}
	tr.OnDeltaStreamClosed(0, nil)
	if err := tr.OnDeltaStreamOpen(a, 1002, resourcev3.AnyType); err != nil {
		t.Errorf("a closed stream did not make room: %v", err)
	}
	last := tr.Refusals()[len(tr.Refusals())-1]
	if last.Reason != ReasonTooManyStreams || len(last.Peer.Identities[0]) > 2*maxShown {
		t.Errorf("refusal %s kept %d bytes of the identity", last.Reason, len(last.Peer.Identities[0]))
	}
}

type peerCtx struct{}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// Summaries (/debug/syncz) count a stream's names without copying them;
// Clients (explain, dump) still list them.
func TestSummariesCountNames(t *testing.T) {
	tr := NewTracker(New(nodeView), func(n *corev3.Node) (string, string, string, error) {
		return n.GetCluster(), "gateway", n.GetCluster() + "/gateway", nil
	}, nil)
	_ = tr.OnDeltaStreamOpen(context.Background(), 1, resourcev3.AnyType)
	if err := tr.OnStreamDeltaRequest(1, &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: numbered("a", 1000)}); err != nil {
		t.Fatal(err)
	}
	sum, full := tr.Summaries()[0].Types[resourcev3.EndpointType], tr.Clients()[0].Types[resourcev3.EndpointType]
	if sum.Names != nil || sum.NameCount != 1000 || len(full.Names) != 1000 || full.NameCount != 1000 {
		t.Errorf("summary: %d names, count %d; client: %d names, count %d", len(sum.Names), sum.NameCount, len(full.Names), full.NameCount)
	}
}
