package cache

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// serve starts the Server of c on loopback with its ServerOptions, as xds
// serve does, and returns a client connection to it.
func serve(t *testing.T, c *Cache) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := grpc.NewServer(ServerOptions()...)
	s := NewServer(ctx, c, nil)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s)
	go func() { _ = g.Serve(l) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); cancel(); g.Stop() })
	return conn
}

type sotwStreamClient interface {
	Send(*discoveryv3.DiscoveryRequest) error
	Recv() (*discoveryv3.DiscoveryResponse, error)
}

// receiver reads a stream in the background; next returns its next
// response, or nil when none comes within wait.
type receiver struct {
	t  *testing.T
	ch chan *discoveryv3.DiscoveryResponse
}

func receive(t *testing.T, s sotwStreamClient) *receiver {
	r := &receiver{t: t, ch: make(chan *discoveryv3.DiscoveryResponse, 16)}
	go func() {
		defer close(r.ch)
		for {
			resp, err := s.Recv()
			if err != nil {
				return
			}
			r.ch <- resp
		}
	}()
	return r
}

func (r *receiver) next(wait time.Duration) *discoveryv3.DiscoveryResponse {
	r.t.Helper()
	select {
	case resp, ok := <-r.ch:
		if !ok {
			r.t.Fatal("stream ended")
		}
		return resp
	case <-time.After(wait):
		return nil
	}
}

// The SotW server speaks the protocol over a real gRPC stream: an ACK with
// the same names waits for a change, an EDS change brings only the changed
// resource, a subscription change brings what was added, a name dropped
// and subscribed again is sent again, a stale nonce is ignored, and a CDS
// response lists every subscribed cluster.
func TestSotwServerProtocol(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 1), cla("b", 1), cla("c", 1)})
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("x"), cluster("y")})
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(serve(t, c)).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	in := receive(t, ads)
	node := &corev3.Node{Id: "n", Cluster: "east"}
	var last = map[string]*discoveryv3.DiscoveryResponse{}
	ask := func(typ string, names ...string) {
		t.Helper()
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names}
		if r := last[typ]; r != nil {
			req.VersionInfo, req.ResponseNonce = r.VersionInfo, r.Nonce
		}
		if err := ads.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, want ...string) {
		t.Helper()
		r := in.next(10 * time.Second)
		if r == nil {
			t.Fatalf("%s: no response, want %v", what, want)
		}
		last[r.TypeUrl] = r
		if got := names(r); !slices.Equal(got, want) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
	// quiet checks that the request just sent got no response. Not by
	// waiting (a slow server would pass): by a barrier, a request of
	// another type whose answer is certain. The server handles a
	// stream's requests one by one, in order, and answers through one
	// queue, so a response the previous request caused comes first.
	barriers := 0
	quiet := func(what string) {
		t.Helper()
		barriers++
		name := fmt.Sprintf("barrier-%d", barriers)
		apply(t, c, resourcev3.ListenerType, []Resource{{Name: name, Message: &listenerv3.Listener{Name: name}}})
		ask(resourcev3.ListenerType, name)
		r := in.next(10 * time.Second)
		if r == nil {
			t.Fatalf("%s: the barrier got no response", what)
		}
		if r.TypeUrl != resourcev3.ListenerType {
			t.Fatalf("%s: unexpected response %v (%s)", what, names(r), r.TypeUrl)
		}
		last[r.TypeUrl] = r
		if got := names(r); !slices.Equal(got, []string{name}) {
			t.Fatalf("%s: the barrier's response names %v", what, got)
		}
	}

	ask(resourcev3.EndpointType, "a", "b")
	expect("initial EDS", "a", "b")
	ask(resourcev3.EndpointType, "a", "b")
	quiet("ACK with the same names")
	// The same ACK once more asks again for what the client holds: Envoy
	// does so for the endpoints of a cluster it keeps warming (xDS
	// protocol, "resource warming"). Its ACK waits again.
	ask(resourcev3.EndpointType, "a", "b")
	expect("the same ACK again", "a", "b")
	ask(resourcev3.EndpointType, "a", "b")
	quiet("ACK of the answer")
	apply(t, c, resourcev3.EndpointType, []Resource{cla("b", 2), cla("c", 2)})
	expect("change of b (and of unsubscribed c)", "b")
	ask(resourcev3.EndpointType, "a", "b", "c")
	expect("c added to the subscription", "c")
	ask(resourcev3.EndpointType, "a", "c")
	quiet("b dropped")
	ask(resourcev3.EndpointType, "a", "b", "c")
	expect("b subscribed again", "b")

	// A request answering an older response is ignored.
	stale := last[resourcev3.EndpointType]
	ask(resourcev3.EndpointType, "a", "b", "c")
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 3)})
	expect("change of a", "a")
	ask(resourcev3.EndpointType, "a", "b", "c")
	if err := ads.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"b"},
		VersionInfo: stale.VersionInfo, ResponseNonce: stale.Nonce}); err != nil {
		t.Fatal(err)
	}
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 4)})
	expect("change of a after a stale request (its narrower names ignored)", "a")

	ask(resourcev3.ClusterType, "x", "y")
	expect("initial CDS", "x", "y")
	ask(resourcev3.ClusterType, "x", "y")
	apply(t, c, resourcev3.ClusterType, []Resource{{Name: "x", Message: &clusterv3.Cluster{Name: "x", AltStatName: "2"}}})
	expect("CDS lists every subscribed cluster", "x", "y")

	// A CDS subscription that grows by a cluster that does not exist is
	// answered at once with every subscribed cluster that does (xDS: LDS
	// and CDS responses include every requested resource), and the ACK
	// of that answer waits for a change.
	ask(resourcev3.ClusterType, "x", "y", "z")
	expect("z, which does not exist, added to the CDS subscription", "x", "y")
	ask(resourcev3.ClusterType, "x", "y", "z")
	quiet("ACK of the grown subscription")
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("z")})
	expect("z once it exists", "x", "y", "z")
}

// A per-type stream (EDS) needs no type URL in its requests; ADS does.
func TestSotwServerTypes(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 1)})
	conn := serve(t, c)
	eds, err := endpointservice.NewEndpointDiscoveryServiceClient(conn).StreamEndpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := eds.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, ResourceNames: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, eds).next(10 * time.Second); r == nil || !slices.Equal(names(r), []string{"a"}) {
		t.Fatalf("EDS stream: %v", r)
	}

	for _, tc := range []struct {
		name string
		req  *discoveryv3.DiscoveryRequest
		code codes.Code
	}{
		{"no type URL", &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "east"}}, codes.InvalidArgument},
		{"unserved type", &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: resourcev3.RuntimeType}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := ads.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			_, err = ads.Recv()
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
}

// encodeRequest encodes a request the way clients do (fields in number
// order) or, with interleave, with a field between two of its names.
func encodeRequest(t *testing.T, typ, version string, names []string, interleave bool) []byte {
	t.Helper()
	if !interleave {
		b, err := proto.Marshal(&discoveryv3.DiscoveryRequest{VersionInfo: version, TypeUrl: typ, ResourceNames: names})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var b []byte
	b = protowire.AppendTag(b, resourceNamesField, protowire.BytesType)
	b = protowire.AppendString(b, names[0])
	b = protowire.AppendTag(b, 4, protowire.BytesType) // type_url
	b = protowire.AppendString(b, typ)
	for _, n := range names[1:] {
		b = protowire.AppendTag(b, resourceNamesField, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	return b
}

// An ACK repeating the names of the previous request of its type reuses
// that request's decoded names (so the subscription is not rebuilt); other
// names, interleaved fields and malformed requests are decoded in full.
func TestSotwDecodeReusesNames(t *testing.T) {
	ss := &sotwState{defType: resourcev3.AnyType, watches: map[string]*sotwWatch{}}
	first := []string{"default/a:80", "default/b:80"}
	req, raw, err := ss.decode(encodeRequest(t, resourcev3.EndpointType, "", first, false))
	if err != nil || !slices.Equal(req.ResourceNames, first) {
		t.Fatalf("first request: %v %v", req.GetResourceNames(), err)
	}
	ss.watches[resourcev3.EndpointType] = &sotwWatch{raw: raw, names: req.ResourceNames}

	for _, tc := range []struct {
		name   string
		b      []byte
		want   []string
		reused bool
	}{
		{"ACK with the same names", encodeRequest(t, resourcev3.EndpointType, "7", first, false), first, true},
		{"same names, another type", encodeRequest(t, resourcev3.ClusterType, "7", first, false), first, false},
		{"one name more", encodeRequest(t, resourcev3.EndpointType, "7", append(slices.Clone(first), "default/c:80"), false), append(slices.Clone(first), "default/c:80"), false},
		{"a prefix of the names", encodeRequest(t, resourcev3.EndpointType, "7", first[:1], false), first[:1], false},
		{"names interleaved with another field", encodeRequest(t, resourcev3.EndpointType, "", first, true), first, false},
		{"no names", encodeRequest(t, resourcev3.EndpointType, "7", nil, false), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _, err := ss.decode(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(req.ResourceNames, tc.want) {
				t.Fatalf("names %v, want %v", req.ResourceNames, tc.want)
			}
			if got := sameSlice(req.ResourceNames, ss.watches[resourcev3.EndpointType].names); got != tc.reused {
				t.Fatalf("names reused: %v, want %v", got, tc.reused)
			}
			var full discoveryv3.DiscoveryRequest
			if err := proto.Unmarshal(tc.b, &full); err != nil {
				t.Fatal(err)
			}
			req.ResourceNames, full.ResourceNames = nil, nil
			if !proto.Equal(req, &full) {
				t.Fatalf("other fields differ from a full decode: %v vs %v", req, &full)
			}
		})
	}
	if _, _, err := ss.decode([]byte{0x1a, 0x10, 'a'}); err == nil {
		t.Fatal("a truncated request decoded")
	}
}

// BenchmarkSotwAck is the server's cost of one ACK of a 1,000-name EDS
// subscription: decoding it and replacing the watch.
func BenchmarkSotwAck(b *testing.B) {
	c := New(nodeView)
	c.SetViews([]string{testView})
	var all []string
	var set []Resource
	for i := range 1000 {
		n := fmt.Sprintf("namespace-%d/service-%d:8080", i, i)
		all = append(all, n)
		set = append(set, cla(n, 1))
	}
	if err := c.Apply([]Update{{View: testView, Type: resourcev3.EndpointType, Set: set}}); err != nil {
		b.Fatal(err)
	}
	s := NewServer(context.Background(), c, nil)
	ss := &sotwState{defType: resourcev3.AnyType, watches: map[string]*sotwWatch{}, out: make(chan cachev3.Response, 8)}
	node := &corev3.Node{Id: "n", Cluster: "east"}
	first, err := proto.Marshal(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: all})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.request(nil, ss, first); err != nil {
		b.Fatal(err)
	}
	resp := <-ss.out
	r, _ := resp.GetDiscoveryResponse()
	ss.watches[resourcev3.EndpointType].nonce = "1"
	resp.(*sotwResponse).applyTo(map[string]string{})
	ss.watches[resourcev3.EndpointType].sub.SetReturnedResources(resp.GetReturnedResources())
	ack, err := proto.Marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: all, VersionInfo: r.VersionInfo, ResponseNonce: "1"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.request(nil, ss, ack); err != nil {
			b.Fatal(err)
		}
	}
	if len(ss.out) != 0 || !strings.HasPrefix(ss.watches[resourcev3.EndpointType].nonce, "1") {
		b.Fatal("an ACK of the latest version was answered")
	}
}

// sentStream is a SotW server stream that records what is sent.
type sentStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*discoveryv3.DiscoveryResponse
}

func (s *sentStream) Context() context.Context { return s.ctx }
func (s *sentStream) Send(r *discoveryv3.DiscoveryResponse) error {
	s.sent = append(s.sent, r)
	return nil
}

// Responses queued on a stream go out in the order they were queued,
// also when a request of the first one's type comes meanwhile: a CDS
// update queued before a listener update that names its new cluster is
// sent first when the client acknowledges the previous CDS response. (It
// was dropped, the listener update sent, and the new CDS watch answered
// after it: a real Envoy rejected the listener, "unknown cluster", and
// held the rejection until the listeners changed again; found by
// test/clusterset.) A request that changes its names still drops the
// queued response of its type, which the new watch replaces.
func TestSotwQueuedResponsesKeepTheirOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ackNames  []string
		wantTypes []string
	}{
		{"ACK with the same names", nil, []string{resourcev3.ClusterType, resourcev3.ListenerType}},
		{"request with new names", []string{"x"}, []string{resourcev3.ListenerType}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			s := NewServer(t.Context(), c, nil)
			node := &corev3.Node{Id: "n", Cluster: "east"}
			ss := &sotwState{defType: resourcev3.AnyType, node: node, watches: map[string]*sotwWatch{}, out: make(chan cachev3.Response, len(servedTypes))}
			for typ, nonce := range map[string]string{resourcev3.ClusterType: "2", resourcev3.ListenerType: "1"} {
				sub := streamv3.NewSotwSubscription(nil, true)
				ss.watches[typ] = &sotwWatch{nonce: nonce, acked: nonce, sub: &sub}
			}
			ss.nonce = 2
			for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
				ss.out <- &cachev3.RawResponse{Request: &cachev3.Request{TypeUrl: typ}, Version: "3"}
			}
			b, err := proto.Marshal(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResourceNames: tc.ackNames, VersionInfo: "2", ResponseNonce: "2"})
			if err != nil {
				t.Fatal(err)
			}
			st := &sentStream{ctx: t.Context()}
			if err := s.request(st, ss, b); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range st.sent {
				got = append(got, r.GetTypeUrl())
			}
			if !slices.Equal(got, tc.wantTypes) {
				t.Errorf("sent %v, want %v", got, tc.wantTypes)
			}
		})
	}
}
