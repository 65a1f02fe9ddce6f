package cptest

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// ClusterLoadAssignmentName reads an encoded ClusterLoadAssignment's
// cluster_name (field 1) without decoding the rest: a SotW response names
// none of its resources, and load clients decode only what they await.
func ClusterLoadAssignmentName(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// FirstPort is the port of a ClusterLoadAssignment's first endpoint, the
// marker load tests change to see a change arrive.
func FirstPort(cla *endpointv3.ClusterLoadAssignment) uint32 {
	for _, l := range cla.Endpoints {
		for _, e := range l.LbEndpoints {
			return e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
		}
	}
	return 0
}

// FollowEndpoints runs an ADS stream (delta or SotW) at addr subscribed,
// as a gateway is, to the ClusterLoadAssignments named, acknowledging
// every response, and calls see for each resource received (value reads
// its bytes) until ctx ends or the stream fails. It is the client of the
// load benchmarks.
func FollowEndpoints(ctx context.Context, addr string, node *corev3.Node, names []string, delta bool, see func(name string, value func() []byte)) error {
	// Fixed windows, as Envoy has: gRPC-Go's bandwidth estimator would
	// otherwise ping the server on every response (a write and a read
	// on the server per stream per change that no gateway costs it).
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)),
		grpc.WithInitialWindowSize(1<<24), grpc.WithInitialConnWindowSize(1<<24))
	if err != nil {
		return err
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	if delta {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}); err != nil {
			return err
		}
		for {
			r, err := s.Recv()
			if err != nil {
				return err
			}
			for _, res := range r.Resources {
				see(res.Name, res.GetResource().GetValue)
			}
			if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.Nonce}); err != nil {
				return err
			}
		}
	}
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: names}); err != nil {
		return err
	}
	for {
		r, err := s.Recv()
		if err != nil {
			return err
		}
		for _, a := range r.Resources {
			see(ClusterLoadAssignmentName(a.GetValue()), a.GetValue)
		}
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce}); err != nil {
			return err
		}
	}
}
