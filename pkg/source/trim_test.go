package source

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// The informer's trim keeps an endpoint's zone hints (trafficDistribution,
// read by translate), one allocation per set of zones in a slice, and
// drops its node hints, target reference and node name.
func TestTrimKeepsZoneHints(t *testing.T) {
	hint := func(zones ...string) *discoveryv1.EndpointHints {
		h := &discoveryv1.EndpointHints{ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}}
		for _, z := range zones {
			h.ForZones = append(h.ForZones, discoveryv1.ForZone{Name: z})
		}
		return h
	}
	es := &discoveryv1.EndpointSlice{Endpoints: []discoveryv1.Endpoint{
		{Addresses: []string{"10.0.0.1"}, Zone: ptr.To("a"), Hints: hint("a"), NodeName: ptr.To("node-1"), TargetRef: &corev1.ObjectReference{Name: "p1"}},
		{Addresses: []string{"10.0.0.2"}, Zone: ptr.To("b"), Hints: hint("a")},
		{Addresses: []string{"10.0.0.3"}, Zone: ptr.To("b"), Hints: hint("b", "c")},
		{Addresses: []string{"10.0.0.4"}, Zone: ptr.To("b"), Hints: hint()}, // node hints only
		{Addresses: []string{"10.0.0.5"}, Zone: ptr.To("b")},
	}}
	o, err := trim(es)
	if err != nil {
		t.Fatal(err)
	}
	eps := o.(*discoveryv1.EndpointSlice).Endpoints
	if eps[0].Hints == nil || len(eps[0].Hints.ForZones) != 1 || eps[0].Hints.ForZones[0].Name != "a" || len(eps[0].Hints.ForNodes) != 0 {
		t.Errorf("first endpoint's hints %+v, want zone a alone", eps[0].Hints)
	}
	if eps[0].Hints != eps[1].Hints {
		t.Error("two endpoints hinted for zone a hold two copies of the hints")
	}
	if eps[2].Hints == nil || len(eps[2].Hints.ForZones) != 2 {
		t.Errorf("third endpoint's hints %+v, want zones b and c", eps[2].Hints)
	}
	if eps[3].Hints != nil || eps[4].Hints != nil {
		t.Errorf("endpoints without zone hints have %+v and %+v, want none", eps[3].Hints, eps[4].Hints)
	}
	if eps[0].NodeName != nil || eps[0].TargetRef != nil {
		t.Error("node name and target reference kept")
	}
}
