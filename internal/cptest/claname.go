package cptest

import (
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
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
