package writeback

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// Derived Service names are valid Service names, stable for a service and
// different between services (even ones whose ns/name concatenate alike).
func TestDerivedName(t *testing.T) {
	a := DerivedName(mcs.ServiceKey{Namespace: "ns", Name: "web"})
	if a != DerivedName(mcs.ServiceKey{Namespace: "ns", Name: "web"}) {
		t.Error("not stable")
	}
	if msgs := validation.IsDNS1035Label(a); len(msgs) > 0 {
		t.Errorf("%q is not a Service name: %v", a, msgs)
	}
	for _, other := range []mcs.ServiceKey{{Namespace: "ns", Name: "web2"}, {Namespace: "nsw", Name: "eb"}, {Namespace: "web", Name: "ns"}} {
		if DerivedName(other) == a {
			t.Errorf("%v collides with ns/web", other)
		}
	}
}

// Labels of written objects always carry the managed-by mark and never
// change the caller's map.
func TestManagedLabels(t *testing.T) {
	in := map[string]string{"tier": "web"}
	out := managedLabels(in)
	if out[LabelManagedBy] != ManagedByValue || out["tier"] != "web" || len(in) != 1 {
		t.Errorf("managedLabels(%v) = %v", in, out)
	}
	if managedLabels(nil)[LabelManagedBy] != ManagedByValue {
		t.Error("nil labels not marked")
	}
}
