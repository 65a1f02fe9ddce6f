package cache

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

const testView = "east/client"

func nodeView(n *corev3.Node) (string, error) {
	if n.GetCluster() == "" {
		return "", errors.New("node.cluster is empty")
	}
	return n.GetCluster() + "/client", nil
}

func newCache(t *testing.T) *Cache {
	t.Helper()
	c := New(nodeView)
	c.SetViews([]string{testView})
	return c
}

func cla(name string, endpoints int) Resource {
	m := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for i := range endpoints {
		m.Endpoints = append(m.Endpoints, &endpointv3.LocalityLbEndpoints{Priority: uint32(i)})
	}
	return Resource{Name: name, Message: m}
}

func cluster(name string) Resource {
	return Resource{Name: name, Message: &clusterv3.Cluster{Name: name}}
}

func apply(t *testing.T, c *Cache, typ string, set []Resource, del ...string) {
	t.Helper()
	if err := c.Apply([]Update{{View: testView, Type: typ, Set: set, Delete: del}}); err != nil {
		t.Fatal(err)
	}
}

// sotwClient plays the go-control-plane server's part for one SotW stream
// and type: it keeps the subscription and records what was returned.
type sotwClient struct {
	t     *testing.T
	c     *Cache
	typ   string
	node  *corev3.Node
	sub   streamv3.Subscription
	out   chan cachev3.Response
	nonce int
	last  *discoveryv3.DiscoveryResponse
	stop  func()
}

func newSotw(t *testing.T, c *Cache, typ string, names ...string) *sotwClient {
	s := &sotwClient{t: t, c: c, typ: typ, node: &corev3.Node{Id: "n", Cluster: "east"},
		sub: streamv3.NewSotwSubscription(names, true), out: make(chan cachev3.Response, 1)}
	s.request(nil)
	return s
}

// request sends a request acknowledging (or, with nackErr, rejecting) the
// last response, as the server would after a client's reply.
func (s *sotwClient) request(nackErr error) {
	s.t.Helper()
	if s.stop != nil {
		s.stop()
	}
	req := &discoveryv3.DiscoveryRequest{Node: s.node, TypeUrl: s.typ, ResourceNames: slices.Collect(mapsKeys(s.sub.SubscribedResources()))}
	if s.last != nil {
		req.ResponseNonce = fmt.Sprint(s.nonce)
		req.VersionInfo = s.last.VersionInfo
		if nackErr != nil {
			req.ErrorDetail = &status.Status{Message: nackErr.Error()}
		}
	}
	stop, err := s.c.CreateWatch(req, s.sub, s.out)
	if err != nil {
		s.t.Fatal(err)
	}
	s.stop = stop
}

// receive returns the response waiting, or nil.
func (s *sotwClient) receive() *discoveryv3.DiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.out:
		resp, err := r.GetDiscoveryResponse()
		if err != nil {
			s.t.Fatal(err)
		}
		s.sub.SetReturnedResources(r.GetReturnedResources())
		s.nonce++
		s.last = resp
		return resp
	default:
		return nil
	}
}

func names(resp *discoveryv3.DiscoveryResponse) []string {
	var out []string
	for _, a := range resp.GetResources() {
		m, _ := a.UnmarshalNew()
		out = append(out, cachev3.GetResourceName(m))
	}
	slices.Sort(out)
	return out
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Each resource is marshalled once per version however many clients get
// it, and every client's response carries the very same bytes.
func TestMarshalOncePerVersionSharedBytes(t *testing.T) {
	c := newCache(t)
	var clients []*sotwClient
	for range 100 {
		s := newSotw(t, c, resourcev3.ClusterType)
		if r := s.receive(); r == nil || len(r.Resources) != 0 {
			t.Fatalf("initial response %v, want an empty one", r)
		}
		s.request(nil)
		clients = append(clients, s)
	}
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a")})
	if got := c.Marshals(); got != 1 {
		t.Errorf("%d marshals for one resource and 100 clients, want 1", got)
	}
	first := clients[0].receive()
	for _, s := range clients[1:] {
		r := s.receive()
		if r == nil || r.Resources[0] != first.Resources[0] {
			t.Fatal("a client did not get the shared bytes")
		}
	}
	// Applying the same content again changes nothing and wakes nobody.
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a")})
	for _, s := range clients {
		s.request(nil)
		if r := s.receive(); r != nil {
			t.Fatalf("unchanged content was sent again: %v", r)
		}
	}
}

// A client subscribing to a subset of names (as gRPC always does) gets
// exactly those, and an update wakes only the watches of what changed.
func TestNamedSubscriptionsAndTargetedWakeups(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 1), cla("b", 1), cla("c", 1)})
	sa := newSotw(t, c, resourcev3.EndpointType, "a")
	sb := newSotw(t, c, resourcev3.EndpointType, "b", "missing")
	if got := names(sa.receive()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a's client got %v", got)
	}
	if got := names(sb.receive()); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("b's client got %v", got)
	}
	sa.request(nil)
	sb.request(nil)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 2)})
	if got := names(sa.receive()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("after a changed, a's client got %v", got)
	}
	if r := sb.receive(); r != nil {
		t.Errorf("b's client was woken by a change of a: %v", names(r))
	}
	apply(t, c, resourcev3.EndpointType, []Resource{cla("c", 3)})
	if r := sb.receive(); r != nil {
		t.Errorf("b's client was woken by a change of c")
	}
}

// For EDS a SotW response carries only what changed; for CDS (full state)
// every subscribed resource, and a deletion is a response without it.
func TestSotwResponseSizes(t *testing.T) {
	c := newCache(t)
	var set []Resource
	for i := range 50 {
		set = append(set, cla(fmt.Sprint("s", i), 1))
	}
	apply(t, c, resourcev3.EndpointType, set)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("x"), cluster("y")})
	eds := newSotw(t, c, resourcev3.EndpointType) // wildcard
	cds := newSotw(t, c, resourcev3.ClusterType)
	if n := len(eds.receive().Resources); n != 50 {
		t.Fatalf("initial EDS %d resources", n)
	}
	cds.receive()
	eds.request(nil)
	cds.request(nil)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("s7", 4)})
	if got := names(eds.receive()); !slices.Equal(got, []string{"s7"}) {
		t.Errorf("one endpoint change sent %v", got)
	}
	apply(t, c, resourcev3.ClusterType, nil, "y")
	if got := names(cds.receive()); !slices.Equal(got, []string{"x"}) {
		t.Errorf("CDS after deleting y: %v, want [x]", got)
	}
}

// A NACKed version is recorded by the server as sent, so it is not sent
// again (no NACK loop); the next change is.
func TestNackIsNotResent(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a")})
	s := newSotw(t, c, resourcev3.ClusterType)
	s.receive()
	s.request(errors.New("cluster a: bad"))
	if r := s.receive(); r != nil {
		t.Fatalf("the rejected version was sent again: %v", r)
	}
	apply(t, c, resourcev3.ClusterType, []Resource{{Name: "a", Message: &clusterv3.Cluster{Name: "a", AltStatName: "v2"}}})
	if r := s.receive(); r == nil {
		t.Fatal("a new version after a NACK was not sent")
	}
}

// A client of a view that does not exist yet waits and is answered when
// it appears; a refused node is never answered.
func TestViewsAndRefusedNodes(t *testing.T) {
	c := New(nodeView)
	s := newSotw(t, c, resourcev3.ClusterType)
	if r := s.receive(); r != nil {
		t.Fatal("answered before the view existed")
	}
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a")})
	if r := s.receive(); r != nil {
		t.Fatal("answered before the view was declared")
	}
	c.SetViews([]string{testView})
	if got := names(s.receive()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after SetViews: %v", got)
	}
	refused := &sotwClient{t: t, c: c, typ: resourcev3.ClusterType, node: &corev3.Node{Id: "x"},
		sub: streamv3.NewSotwSubscription(nil, true), out: make(chan cachev3.Response, 1)}
	refused.request(nil)
	if r := refused.receive(); r != nil {
		t.Fatal("a node without a cluster was answered")
	}
	s.request(nil)
	c.SetViews(nil)
	if got := s.receive(); got == nil || len(got.Resources) != 0 {
		t.Fatalf("a removed view's client was not told its clusters are gone: %v", got)
	}
}

// deltaClient plays the server's part for one delta stream and type.
type deltaClient struct {
	t     *testing.T
	c     *Cache
	typ   string
	sub   streamv3.Subscription
	out   chan cachev3.DeltaResponse
	stop  func()
	nonce string
}

func newDelta(t *testing.T, c *Cache, typ string, subscribe ...string) *deltaClient {
	d := &deltaClient{t: t, c: c, typ: typ, sub: streamv3.NewDeltaSubscription(subscribe, nil, nil, true), out: make(chan cachev3.DeltaResponse, 1)}
	d.request(subscribe, nil)
	return d
}

func (d *deltaClient) request(subscribe, unsubscribe []string) {
	d.t.Helper()
	if d.stop != nil {
		d.stop()
		d.sub.UpdateResourceSubscriptions(subscribe, unsubscribe)
	}
	req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: d.typ, ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe, ResponseNonce: d.nonce}
	stop, err := d.c.CreateDeltaWatch(req, d.sub, d.out)
	if err != nil {
		d.t.Fatal(err)
	}
	d.stop = stop
}

func (d *deltaClient) receive() *discoveryv3.DeltaDiscoveryResponse {
	select {
	case r := <-d.out:
		resp, _ := r.GetDeltaDiscoveryResponse()
		d.sub.SetReturnedResources(r.GetNextVersionMap())
		d.nonce = fmt.Sprint(len(d.nonce) + 1)
		return resp
	default:
		return nil
	}
}

func deltaNames(r *discoveryv3.DeltaDiscoveryResponse) (set, removed []string) {
	for _, res := range r.GetResources() {
		set = append(set, res.GetName())
	}
	slices.Sort(set)
	return set, r.GetRemovedResources()
}

// Delta: a wildcard client gets everything, then only changes and
// removals; a named client subscribes and unsubscribes.
func TestDelta(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a"), cluster("b")})
	w := newDelta(t, c, resourcev3.ClusterType)
	if set, _ := deltaNames(w.receive()); !slices.Equal(set, []string{"a", "b"}) {
		t.Fatalf("initial %v", set)
	}
	w.request(nil, nil)
	apply(t, c, resourcev3.ClusterType, []Resource{{Name: "a", Message: &clusterv3.Cluster{Name: "a", AltStatName: "2"}}}, "b")
	set, removed := deltaNames(w.receive())
	if !slices.Equal(set, []string{"a"}) || !slices.Equal(removed, []string{"b"}) {
		t.Errorf("after change of a and delete of b: set %v removed %v", set, removed)
	}

	n := newDelta(t, c, resourcev3.ClusterType, "a")
	if set, _ := deltaNames(n.receive()); !slices.Equal(set, []string{"a"}) {
		t.Fatalf("named initial %v", set)
	}
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("c")})
	n.request([]string{"c"}, []string{"a"})
	if set, _ := deltaNames(n.receive()); !slices.Equal(set, []string{"c"}) {
		t.Errorf("after subscribing to c: %v", set)
	}
	n.request(nil, nil)
	apply(t, c, resourcev3.ClusterType, []Resource{{Name: "a", Message: &clusterv3.Cluster{Name: "a", AltStatName: "3"}}})
	if r := n.receive(); r != nil {
		t.Errorf("an unsubscribed resource's change was sent: %v", r)
	}
}

// Updates are applied, and watches answered, in the order given: over one
// ADS stream a client gets a new cluster before the route that names it
// (make before break).
func TestApplyAnswersInOrder(t *testing.T) {
	c := newCache(t)
	out := make(chan cachev3.Response, 4)
	for _, typ := range []string{resourcev3.RouteType, resourcev3.ListenerType, resourcev3.EndpointType, resourcev3.ClusterType} {
		req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Cluster: "east"}, TypeUrl: typ, ResponseNonce: "1"}
		if _, err := c.CreateWatch(req, streamv3.NewSotwSubscription(nil, true), out); err != nil {
			t.Fatal(err)
		}
	}
	named := func(typ, name string) Update {
		return Update{View: testView, Type: typ, Set: []Resource{{Name: name, Message: &clusterv3.Cluster{Name: name, AltStatName: typ}}}}
	}
	if err := c.Apply([]Update{
		named(resourcev3.ClusterType, "c"), named(resourcev3.EndpointType, "c"),
		named(resourcev3.ListenerType, "l"), named(resourcev3.RouteType, "r"),
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		got = append(got, (<-out).GetRequest().GetTypeUrl())
	}
	want := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
	if !slices.Equal(got, want) {
		t.Errorf("answered in order %v, want %v", got, want)
	}
}

// A delta client that reconnects holding every current version (its
// initial_resource_versions) gets an empty answer to its first request of
// each type, named or wildcard, so that it ACKs and is known to be up to
// date; nothing is sent again.
func TestDeltaReconnectUpToDateIsAnswered(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("a", 1)})
	first := newDelta(t, c, resourcev3.EndpointType, "a")
	resp := first.receive()
	held := map[string]string{"a": resp.GetResources()[0].GetVersion()}
	for name, wildcard := range map[string]bool{"named": false, "wildcard": true} {
		t.Run(name, func(t *testing.T) {
			var subscribe []string
			if !wildcard {
				subscribe = []string{"a"}
			}
			d := &deltaClient{t: t, c: c, typ: resourcev3.EndpointType, sub: streamv3.NewDeltaSubscription(subscribe, nil, held, wildcard), out: make(chan cachev3.DeltaResponse, 1)}
			d.request(subscribe, nil)
			r := d.receive()
			if r == nil {
				t.Fatal("the reconnecting client's first request was not answered")
			}
			if len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 {
				t.Errorf("resources it holds were sent again: %v", r)
			}
		})
	}
}

// A resource identical across views, given as one message, is marshalled
// once and every view serves the same bytes.
func TestSharedMessageMarshalledOnce(t *testing.T) {
	c := New(nodeView)
	views := []string{"a/client", "b/client", "c/client"}
	c.SetViews(views)
	shared := cluster("web").Message
	var updates []Update
	for _, v := range views {
		updates = append(updates, Update{View: v, Type: resourcev3.ClusterType, Set: []Resource{{Name: "web", Message: shared}}})
	}
	if err := c.Apply(updates); err != nil {
		t.Fatal(err)
	}
	if got := c.Marshals(); got != 1 {
		t.Errorf("%d marshals for one message in 3 views, want 1", got)
	}
	first := c.views["a/client"].types[resourcev3.ClusterType].resources["web"]
	for _, v := range views[1:] {
		e := c.views[v].types[resourcev3.ClusterType].resources["web"]
		if e == nil || e.any != first.any || e == first {
			t.Errorf("view %s does not share the bytes in an entry of its own", v)
		}
	}
}

// A cluster updated in a view sends its endpoints again, unchanged, under
// a new version: Envoy keeps an updated EDS cluster warming until it gets
// them, and over delta asks for nothing (also-broken item 1 of the
// trust-boundaries issue: a cluster-only change left a gateway STALE for
// 15 s). A new cluster, or one whose endpoints do not exist, sends
// nothing more.
func TestClusterUpdateSendsItsEndpointsAgain(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.EndpointType, []Resource{cla("x", 1)})
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("x")})
	eds := newDelta(t, c, resourcev3.EndpointType, "x")
	first := eds.receive()
	eds.request(nil, nil)
	apply(t, c, resourcev3.ClusterType, []Resource{{Name: "x", Message: &clusterv3.Cluster{Name: "x", AltStatName: "changed"}}})
	again := eds.receive()
	if again == nil || len(again.GetResources()) != 1 || again.GetResources()[0].GetName() != "x" {
		t.Fatalf("after x's cluster changed, EDS got %v, want x again", again)
	}
	a, b := first.GetResources()[0], again.GetResources()[0]
	if a.GetVersion() == b.GetVersion() || !proto.Equal(a.GetResource(), b.GetResource()) {
		t.Errorf("x sent again as version %s (was %s), same bytes %v: want a new version of the same bytes", b.GetVersion(), a.GetVersion(), proto.Equal(a.GetResource(), b.GetResource()))
	}
	// Sent again and again, the version keeps one suffix.
	for i := range 5 {
		eds.request(nil, nil)
		apply(t, c, resourcev3.ClusterType, []Resource{{Name: "x", Message: &clusterv3.Cluster{Name: "x", AltStatName: fmt.Sprint("changed", i)}}})
		if r := eds.receive(); r == nil || len(r.GetResources()[0].GetVersion()) > len(b.GetVersion())+3 {
			t.Fatalf("resend %d: %v (first resend's version %s)", i, r, b.GetVersion())
		}
	}
	eds.request(nil, nil)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("y")})
	if r := eds.receive(); r != nil {
		t.Errorf("a new cluster sent endpoints again: %v", r)
	}
}
