package cptest

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestFirstPort guards the load clients' marker: read from the wire, it
// is the port of the first endpoint of the first locality, as a full
// decode would give, whatever other fields come before it.
func TestFirstPort(t *testing.T) {
	endpoint := func(port uint32) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Hostname: "h",
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Protocol: corev3.SocketAddress_UDP, Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
		}}, HealthStatus: corev3.HealthStatus_HEALTHY, LoadBalancingWeight: wrapperspb.UInt32(3)}
	}
	for _, tc := range []struct {
		name string
		cla  *endpointv3.ClusterLoadAssignment
		want uint32
	}{
		{"no endpoints", &endpointv3.ClusterLoadAssignment{ClusterName: "c"}, 0},
		{"one", &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Locality: &corev3.Locality{Region: "r"}, LbEndpoints: []*endpointv3.LbEndpoint{endpoint(20001)}},
		}}, 20001},
		{"the first of several localities and endpoints", &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Locality: &corev3.Locality{Region: "a"}, LbEndpoints: []*endpointv3.LbEndpoint{endpoint(65535), endpoint(2)}, Priority: 1},
			{LbEndpoints: []*endpointv3.LbEndpoint{endpoint(3)}},
		}}, 65535},
		{"an empty first locality", &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Locality: &corev3.Locality{Region: "a"}},
			{LbEndpoints: []*endpointv3.LbEndpoint{endpoint(3)}},
		}}, 0},
		{"a named port", &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"},
				}}},
			}}}}},
		}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.cla)
			if err != nil {
				t.Fatal(err)
			}
			if got := FirstPort(b); got != tc.want {
				t.Errorf("FirstPort = %d, want %d", got, tc.want)
			}
		})
	}
	if got := FirstPort([]byte{0x12, 0xff}); got != 0 {
		t.Errorf("FirstPort of a truncated message = %d, want 0", got)
	}
}
