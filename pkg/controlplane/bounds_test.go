package controlplane_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/pkg/cache"
)

// Finding 7 of the trust-boundaries issue, with the probe's client
// shapes against the real server: one peer (here every stream comes from
// 127.0.0.1) opens as many delta ADS streams as it may and subscribes, in
// every type, as many 1 KB names as it may, with the largest node it
// may. Before, two such streams held 1.07 GB. What the server holds for
// that peer, measured after a forced GC while the streams are open, stays
// within the bounds (MaxPeerNameBytes of names, kept in a few copies:
// the tracker's, go-control-plane's subscription, the cache's watch).
func TestWorstClientHeapIsBounded(t *testing.T) {
	app := cptest.Start(t, "../../examples/clusterset")
	conn, err := grpc.NewClient(app.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := heapInUse()
	node := &corev3.Node{Id: strings.Repeat("n", cache.MaxNodeBytes-200), Cluster: "east"}
	names := func(s, n int) []string {
		out := make([]string, n)
		for i := range out {
			p := fmt.Sprintf("s%d-%d-", s, i)
			out[i] = p + strings.Repeat("x", 1000-len(p))
		}
		return out
	}
	types := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
	refusedAt, opened := "", 0
	for s := 0; s < cache.MaxStreamsPerPeer+1 && refusedAt == ""; s++ {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		opened++
		// Just under the stream's own bound (so that it lives), spread
		// over the types: 1,000 names of 1 KB per request.
		for r := range cache.MaxStreamNameBytes/(1000*1000) - 1 {
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: types[r%len(types)], ResourceNamesSubscribe: names(s*10+r, 1000)}); err != nil {
				break
			}
		}
		// A refused stream ends with a status; a served one answers.
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					done <- err
					return
				}
			}
		}()
		select {
		case err := <-done:
			if c := status.Code(err); c == codes.ResourceExhausted || c == codes.InvalidArgument {
				refusedAt = fmt.Sprintf("stream %d: %v", s+1, err)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	if refusedAt == "" {
		t.Fatalf("%d streams of 3 MB of names each were all served", opened)
	}
	held := int64(heapInUse()) - int64(before)
	t.Logf("one peer: %d streams, refused at %s; heap held %.1f MB", opened, refusedAt, float64(held)/(1<<20))
	if limit := int64(8 * cache.MaxPeerNameBytes); held > limit {
		t.Errorf("one peer holds %d MB of the server's heap, want at most %d MB", held>>20, limit>>20)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
