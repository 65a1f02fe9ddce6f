package translate

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// Validate refuses what Envoy's own rules refuse, what hides in embedded
// configs, and what gRPC NACKs or silently mishandles, and accepts what
// Service and Gateway build.
func TestValidate(t *testing.T) {
	key := mcs.ServiceKey{Namespace: "ns", Name: "web"}
	good := func() *clusterv3.Cluster {
		return cluster(ClusterName(key, 80), key, &mcs.ImportPort{}, View{Role: RoleClient}, false)
	}
	hcmWith := func(filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
		h := httpConnectionManager("l", "r", nil)
		h.HttpFilters = filters
		return &listenerv3.Listener{Name: "l", ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(h)}}
	}
	router := httpConnectionManager("l", "r", nil).HttpFilters[0]
	cla := func(prios ...uint32) *endpointv3.ClusterLoadAssignment {
		c := &endpointv3.ClusterLoadAssignment{ClusterName: "c"}
		for _, p := range prios {
			c.Endpoints = append(c.Endpoints, &endpointv3.LocalityLbEndpoints{
				Locality: &corev3.Locality{Region: "a"}, Priority: p, LoadBalancingWeight: wrapperspb.UInt32(1),
			})
		}
		return c
	}
	tests := map[string]struct {
		msg  proto.Message
		want string // substring of the error; empty: valid
	}{
		"built cluster":      {good(), ""},
		"built api listener": {apiListener("l", "r", nil), ""},
		"built gateway":      {gatewayListener("g", "r", 15080, View{}, nil), ""},
		"static cluster": {func() proto.Message {
			c := good()
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			return c
		}(), "only EDS"},
		"maglev":          {func() proto.Message { c := good(); c.LbPolicy = clusterv3.Cluster_MAGLEV; return c }(), "not supported by gRPC"},
		"no name (pgv)":   {func() proto.Message { c := good(); c.Name = ""; return c }(), "Name"},
		"no filters":      {hcmWith(), "http_filters must not be empty"},
		"router not last": {hcmWith(router, &hcmv3.HttpFilter{Name: "x", ConfigType: router.ConfigType}), "router filter must be last"},
		"weightless locality": {func() proto.Message {
			c := cla(0)
			c.Endpoints[0].LoadBalancingWeight = nil
			return c
		}(), "load_balancing_weight"},
		"priority gap":  {cla(0, 2), "contiguous"},
		"priorities ok": {cla(0, 1, 1), ""},
		"duplicate domain": {&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{
			{Name: "a", Domains: []string{"x"}, Routes: []*routev3.Route{routeTo("c", nil)}},
			{Name: "b", Domains: []string{"x"}, Routes: []*routev3.Route{routeTo("c", nil)}},
		}}, `domain "x"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := Validate(tc.msg, RoleClient)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A listener made with a packer is validated from the typed configs it
// was built from, not by unmarshalling the bytes just marshalled: a
// change to the typed HttpConnectionManager after packing shows in the
// packed validation only.
func TestValidatePackedReadsTypedConfigs(t *testing.T) {
	p := packer{}
	lis := apiListener("l", "r", p)
	if err := validate(lis, RoleClient, p); err != nil {
		t.Fatalf("a listener as built: %v", err)
	}
	for _, m := range p {
		if h, ok := m.(*hcmv3.HttpConnectionManager); ok {
			h.HttpFilters = nil // the typed message only; the bytes keep them
		}
	}
	if err := validate(lis, RoleClient, p); err == nil || !strings.Contains(err.Error(), "http_filters must not be empty") {
		t.Errorf("packed validation did not read the typed config: %v", err)
	}
	if err := Validate(lis, RoleClient); err != nil {
		t.Errorf("unpacked validation (the bytes) changed: %v", err)
	}
}
