package controlplane

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// The node contract: node.cluster names the member cluster, and
// node.metadata.role is client (default), gateway or gateway-api (with
// node.metadata.gateway naming the Gateway); anything else is
// refused with a reason that says what to fix.
func TestParseNode(t *testing.T) {
	meta := func(role string, kv ...string) *structpb.Struct {
		m := map[string]any{"role": role}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		s, _ := structpb.NewStruct(m)
		return s
	}
	tests := map[string]struct {
		node     *corev3.Node
		wantView string
		wantErr  string
	}{
		"client by default":                      {&corev3.Node{Id: "a", Cluster: "east"}, "east/client", ""},
		"gateway":                                {&corev3.Node{Id: "g", Cluster: "west", Metadata: meta("gateway")}, "west/gateway", ""},
		"no cluster":                             {&corev3.Node{Id: "x"}, "", "node.cluster is empty"},
		"unknown role":                           {&corev3.Node{Id: "x", Cluster: "east", Metadata: meta("sidecar")}, "", `node.metadata.role "sidecar"`},
		"no node":                                {nil, "", "no node"},
		"gateway-api":                            {&corev3.Node{Id: "e", Cluster: "east", Metadata: meta("gateway-api", "gateway", "infra/public")}, "east/gateway-api/infra/public", ""},
		"gateway-api without gateway":            {&corev3.Node{Id: "e", Cluster: "east", Metadata: meta("gateway-api")}, "", "node.metadata.gateway"},
		"gateway-api, gateway without namespace": {&corev3.Node{Id: "e", Cluster: "east", Metadata: meta("gateway-api", "gateway", "public")}, "", "<namespace>/<name>"},
		"gateway-api, gateway with two slashes":  {&corev3.Node{Id: "e", Cluster: "east", Metadata: meta("gateway-api", "gateway", "a/b/c")}, "", "<namespace>/<name>"},
		// The client's Kubernetes zone (trafficDistribution) is its
		// sub-zone; its zone is its member, for Envoy's stats.
		"client in a zone":            {&corev3.Node{Id: "a", Cluster: "east", Locality: &corev3.Locality{Zone: "east", SubZone: "us-east-1a"}}, "east/client@us-east-1a", ""},
		"gateway in a zone":           {&corev3.Node{Id: "g", Cluster: "east", Metadata: meta("gateway"), Locality: &corev3.Locality{SubZone: "z1"}}, "east/gateway@z1", ""},
		"zone that is no label value": {&corev3.Node{Id: "a", Cluster: "east", Locality: &corev3.Locality{SubZone: "a/b"}}, "", `node.locality.sub_zone "a/b" is not a zone`},
		"gateway-api ignores zones":   {&corev3.Node{Id: "e", Cluster: "east", Metadata: meta("gateway-api", "gateway", "infra/public"), Locality: &corev3.Locality{SubZone: "z1"}}, "east/gateway-api/infra/public", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			view, err := NodeView(tc.node)
			if view != tc.wantView || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("NodeView = %q, %v; want %q, error containing %q", view, err, tc.wantView, tc.wantErr)
			}
		})
	}
}
