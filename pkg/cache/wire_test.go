package cache

import (
	"bytes"
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func anys(n, size int) []*anypb.Any {
	var out []*anypb.Any
	for i := range n {
		out = append(out, &anypb.Any{TypeUrl: resourcev3.EndpointType, Value: bytes.Repeat([]byte{byte(i)}, size)})
	}
	return out
}

func deltaResources(n, size int) []*discoveryv3.Resource {
	var out []*discoveryv3.Resource
	for i, a := range anys(n, size) {
		out = append(out, &discoveryv3.Resource{Name: fmt.Sprint("r", i), Version: fmt.Sprint(i), Resource: a})
	}
	return out
}

// The codec writes every response so that it decodes to the very message
// given, and a large one references the resources' bytes instead of
// copying them.
func TestCodecWritesResponsesFromSharedBytes(t *testing.T) {
	withTTL := deltaResources(40, 1024)
	withTTL[3].Ttl = durationpb.New(5)
	withTTL[4].Aliases = []string{"alias"}
	for _, tc := range []struct {
		name   string
		msg    proto.Message
		shared bool
	}{
		{"small SotW", &discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: resourcev3.EndpointType, Nonce: "3", Resources: anys(2, 10)}, false},
		{"large SotW", &discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: resourcev3.EndpointType, Nonce: "3", Resources: anys(100, 3000),
			ControlPlane: &corev3.ControlPlane{Identifier: "eastwest"}}, true},
		{"large SotW, an empty resource", &discoveryv3.DiscoveryResponse{Resources: append(anys(40, 1024), &anypb.Any{})}, true},
		{"small delta", &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "2", TypeUrl: resourcev3.ClusterType, Resources: deltaResources(2, 10), RemovedResources: []string{"gone"}}, false},
		{"large delta", &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "2", Nonce: "9", TypeUrl: resourcev3.ClusterType, Resources: deltaResources(100, 3000), RemovedResources: []string{"gone"}}, true},
		{"large delta, fields the cache never sets", &discoveryv3.DeltaDiscoveryResponse{Resources: withTTL}, true},
		{"a request", &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Codec().Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := tc.msg.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(data.Materialize(), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.msg) {
				t.Fatalf("decoded %v\nwant %v", got, tc.msg)
			}
			if shares := sharesResourceBytes(data, tc.msg); shares != tc.shared {
				t.Fatalf("resource bytes shared: %v, want %v", shares, tc.shared)
			}
		})
	}
}

// sharesResourceBytes reports whether one of the buffers is the first
// resource's value itself.
func sharesResourceBytes(data mem.BufferSlice, msg proto.Message) bool {
	var first []byte
	switch m := msg.(type) {
	case *discoveryv3.DiscoveryResponse:
		first = m.Resources[0].Value
	case *discoveryv3.DeltaDiscoveryResponse:
		first = m.Resources[0].Resource.Value
	default:
		return false
	}
	for _, b := range data {
		if d := b.ReadOnlyData(); len(d) > 0 && len(first) > 0 && &d[0] == &first[0] {
			return true
		}
	}
	return false
}
