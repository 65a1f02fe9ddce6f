package cache

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
)

type countingObserver struct {
	pushes, nacks, clients int
	refused                []string
}

func (o *countingObserver) Pushed(string, time.Duration, bool) { o.pushes++ }
func (o *countingObserver) Nacked(string)                      { o.nacks++ }
func (o *countingObserver) Clients(n int)                      { o.clients = n }
func (o *countingObserver) Refused(reason string)              { o.refused = append(o.refused, reason) }

// The Tracker follows a stream through the protocol: a response makes the
// type STALE, an ACK of its nonce SYNCED, a NACK NACKED with the message,
// the rejected version and the resources it carried; SotW and delta streams
// with the same ID are different clients.
func TestTrackerFollowsAcksAndNacks(t *testing.T) {
	c := newCache(t)
	apply(t, c, resourcev3.ClusterType, []Resource{cluster("a"), cluster("b")})
	obs := &countingObserver{}
	tr := NewTracker(c, func(n *corev3.Node) (string, string, string, error) {
		if n.GetCluster() == "" {
			return "", "", "", errors.New("no cluster")
		}
		return n.GetCluster(), "client", n.GetCluster() + "/client", nil
	}, obs)
	_ = tr.OnStreamOpen(context.Background(), 1, "")
	_ = tr.OnDeltaStreamOpen(context.Background(), 1, "")
	node := &corev3.Node{Id: "n1", Cluster: "east"}
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}
	_ = tr.OnStreamRequest(1, req)

	s := newSotw(t, c, resourcev3.ClusterType)
	resp := s.receive()
	resp.Nonce = "1"
	tr.OnStreamResponse(context.Background(), 1, req, resp)
	state := func() *TypeSync {
		for _, cl := range tr.Clients() {
			if !cl.Delta {
				return cl.Types[resourcev3.ClusterType]
			}
		}
		t.Fatal("no SotW client")
		return nil
	}
	if got := state(); got.State != Stale || got.Sent != resp.VersionInfo {
		t.Fatalf("after a response: %+v", got)
	}
	_ = tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "1", VersionInfo: resp.VersionInfo})
	if got := state(); got.State != Synced || got.Acked != resp.VersionInfo {
		t.Fatalf("after an ACK: %+v", got)
	}

	resp2 := &discoveryv3.DiscoveryResponse{VersionInfo: "9", Nonce: "2", TypeUrl: resourcev3.ClusterType}
	sent := context.WithValue(context.Background(), ctxKey{}, &responseInfo{entries: []*entry{{name: "a"}, {name: "b"}}})
	tr.OnStreamResponse(sent, 1, req, resp2)
	_ = tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "2", VersionInfo: resp.VersionInfo,
		ErrorDetail: &status.Status{Message: "cluster b: bad"}})
	got := state()
	if got.State != Nacked || got.Nacked != "9" || got.NackError != "cluster b: bad" || got.Acked != resp.VersionInfo ||
		!maps.Equal(got.NackedResources, map[string]string{"a": "9", "b": "9"}) {
		t.Errorf("after a NACK: %+v", got)
	}
	if obs.nacks != 1 || obs.pushes != 2 || obs.clients != 2 {
		t.Errorf("observer saw %+v", obs)
	}

	// The delta stream: a NACK names the resources of the rejected
	// response, each at its own version.
	dreq := &discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: []string{"*"}}
	_ = tr.OnStreamDeltaRequest(1, dreq)
	tr.OnStreamDeltaResponse(1, dreq, &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "7", Nonce: "d1", TypeUrl: resourcev3.ClusterType,
		Resources: []*discoveryv3.Resource{{Name: "a", Version: "va"}, {Name: "b", Version: "vb"}}})
	_ = tr.OnStreamDeltaRequest(1, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "d1",
		ErrorDetail: &status.Status{Message: "cluster a: bad"}})
	for _, cl := range tr.Clients() {
		if !cl.Delta {
			continue
		}
		got := cl.Types[resourcev3.ClusterType]
		if got.State != Nacked || got.Nacked != "7" || !maps.Equal(got.NackedResources, map[string]string{"a": "va", "b": "vb"}) {
			t.Errorf("delta, after a NACK: %+v", got)
		}
	}
	tr.OnDeltaStreamClosed(1, nil)
	if n := len(tr.Clients()); n != 1 || obs.clients != 1 {
		t.Errorf("closing the delta stream left %d clients", n)
	}
}

// A client that waited (its cluster not a member yet) shows the reason
// while it waits and none once it is served: the reason is asked again
// whenever the clients are read.
func TestTrackerErrorIsCurrent(t *testing.T) {
	c := newCache(t)
	member := false
	tr := NewTracker(c, func(n *corev3.Node) (string, string, string, error) {
		if !member {
			return n.GetCluster(), "client", "", errors.New("not a member yet")
		}
		return n.GetCluster(), "client", n.GetCluster() + "/client", nil
	}, nil)
	_ = tr.OnStreamOpen(context.Background(), 1, "")
	_ = tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n", Cluster: "east"}, TypeUrl: resourcev3.ClusterType})
	// Served nothing is UNSERVED, not a refusal: nothing was refused.
	if got := tr.Clients()[0]; got.Error != "not a member yet" || got.Summary() != UnservedState || len(tr.Refusals()) != 0 {
		t.Fatalf("while waiting: %+v, summary %s, refusals %v", got, got.Summary(), tr.Refusals())
	}
	member = true
	if got := tr.Clients()[0]; got.Error != "" || got.View != "east/client" || got.Summary() == UnservedState {
		t.Errorf("once served: error %q view %q summary %s", got.Error, got.View, got.Summary())
	}
}
