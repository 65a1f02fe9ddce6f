package cptest

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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

// FirstPort is the port of an encoded ClusterLoadAssignment's first
// endpoint, the marker load tests change to see a change arrive, read
// without decoding the rest (0 if it has none). The load clients stand in
// for gateways on other machines: a full decode of every response by 100
// of them, on the cores the server is measured on, would be the
// benchmark's own load, not the server's delivery.
func FirstPort(b []byte) uint32 {
	// endpoints[0].lb_endpoints[0].endpoint.address.socket_address
	for _, num := range []protowire.Number{2, 2, 1, 1, 1} {
		if b = firstMessage(b, num); b == nil {
			return 0
		}
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == 3 && typ == protowire.VarintType { // port_value
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0
			}
			return uint32(v) //nolint:gosec // a port_value is a uint32 field
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0
		}
		b = b[n:]
	}
	return 0
}

// firstMessage is the encoding of the first field num of message b, or nil.
func firstMessage(b []byte, num protowire.Number) []byte {
	for len(b) > 0 {
		got, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if got == num && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil
			}
			return v
		}
		if n = protowire.ConsumeFieldValue(got, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
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
