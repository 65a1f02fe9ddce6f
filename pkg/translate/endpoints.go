package translate

import (
	"runtime"
	"slices"
	"sync"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// sliceEndpoints are the Envoy endpoints of one EndpointSlice for one
// target port, as every view's assignment holds them: views differ in
// their localities' order, priorities and weights, never in an endpoint.
// They are built once per slice (a Slice is never changed: a changed
// EndpointSlice is a new one) and port, and shared, read-only, by every
// assignment that holds them, in every view and every publish until the
// slice changes. One endpoint change in one member then rebuilds that
// slice's endpoints alone, instead of every endpoint of the service in
// every view that imports it (issue 29: 500 endpoints x 20 views per
// change at 250 members, most of a follower's CPU per change).
type sliceEndpoints struct {
	eps     []*endpointv3.LbEndpoint
	healthy int
	zones   []string // of the endpoints kept, each once
}

type sliceKey struct {
	slice weak.Pointer[mcs.Slice]
	port  uint32
}

// built holds the endpoints of the slices alive; an entry goes when its
// slice is collected (runtime.AddCleanup), so it never outlives the
// state that holds the slice.
var built sync.Map // sliceKey -> *sliceEndpoints

// endpointsOf returns a slice's endpoints for a target port (1-65535),
// built once.
func endpointsOf(s *mcs.Slice, port uint32) *sliceEndpoints {
	k := sliceKey{slice: weak.Make(s), port: port}
	if v, ok := built.Load(k); ok {
		return v.(*sliceEndpoints)
	}
	se := buildEndpoints(s, port)
	if v, loaded := built.LoadOrStore(k, se); loaded {
		return v.(*sliceEndpoints)
	}
	runtime.AddCleanup(s, func(k sliceKey) { built.Delete(k) }, k)
	return se
}

// buildEndpoints makes a slice's endpoints for a port: ready ones
// HEALTHY, serving-but-terminating ones DRAINING, the others left out.
func buildEndpoints(s *mcs.Slice, port uint32) *sliceEndpoints {
	se := &sliceEndpoints{eps: make([]*endpointv3.LbEndpoint, 0, s.Len())}
	for e := range s.All() {
		health, ok := endpointHealth(e)
		if !ok {
			continue
		}
		for _, addr := range e.Addresses {
			se.eps = append(se.eps, lbEndpoint(addr, port, health, e.Hostname))
			if health == corev3.HealthStatus_HEALTHY {
				se.healthy++
			}
		}
		if len(e.Addresses) > 0 && !slices.Contains(se.zones, e.Zone) {
			se.zones = append(se.zones, e.Zone)
		}
	}
	return se
}

// endpointHealth is an endpoint's Envoy health, and whether it is given
// at all.
func endpointHealth(e mcs.Endpoint) (corev3.HealthStatus, bool) {
	switch {
	case e.Ready:
		return corev3.HealthStatus_HEALTHY, true
	case e.Serving && e.Terminating:
		return corev3.HealthStatus_DRAINING, true
	}
	return corev3.HealthStatus_UNKNOWN, false
}

// SameAssignment reports whether two assignments of one name are equal,
// cheaply, for those whose endpoints come from endpointsOf: their
// localities alike and their endpoints the same messages. It may say
// false for equal ones built apart (then both are kept; nothing is
// wrong, one more is marshalled).
func SameAssignment(a, b *endpointv3.ClusterLoadAssignment) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil || a.ClusterName != b.ClusterName || len(a.Endpoints) != len(b.Endpoints) ||
		a.GetPolicy().GetOverprovisioningFactor().GetValue() != b.GetPolicy().GetOverprovisioningFactor().GetValue() ||
		len(a.NamedEndpoints) > 0 || len(b.NamedEndpoints) > 0 {
		return false
	}
	for i, la := range a.Endpoints {
		lb := b.Endpoints[i]
		if la.Priority != lb.Priority || la.GetLoadBalancingWeight().GetValue() != lb.GetLoadBalancingWeight().GetValue() ||
			(la.LoadBalancingWeight == nil) != (lb.LoadBalancingWeight == nil) ||
			la.GetLocality().GetRegion() != lb.GetLocality().GetRegion() || la.GetLocality().GetZone() != lb.GetLocality().GetZone() ||
			la.GetLocality().GetSubZone() != lb.GetLocality().GetSubZone() || la.Proximity != nil || lb.Proximity != nil ||
			la.LbConfig != nil || lb.LbConfig != nil || la.Metadata != nil || lb.Metadata != nil ||
			len(la.LbEndpoints) != len(lb.LbEndpoints) {
			return false
		}
		for j, e := range la.LbEndpoints {
			if e != lb.LbEndpoints[j] {
				return false
			}
		}
	}
	return true
}
