package provision_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// Generated objects are named <gateway>-<class> (GEP-1762) when that is a
// DNS label, which a Service's name must be; otherwise a valid label
// derived from it, different for different Gateways.
func TestName(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct {
		gateway, class, want string
	}{
		{"public", "eastwest", "public-eastwest"},
		{"1st", "eastwest", ""},        // a DNS-1035 label starts with a letter
		{"my.gateway", "eastwest", ""}, // dots are not in a label
		{long, "eastwest", ""},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got := provision.Name(tc.gateway, tc.class)
		if tc.want != "" && got != tc.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tc.gateway, tc.class, got, tc.want)
		}
		if errs := validation.IsDNS1035Label(got); len(errs) > 0 {
			t.Errorf("Name(%q, %q) = %q: %v", tc.gateway, tc.class, got, errs)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("Name(%q) = Name(%q) = %q", tc.gateway, other, got)
		}
		seen[got] = tc.gateway
	}
	if a, b := provision.Name(long+"x", "eastwest"), provision.Name(long+"y", "eastwest"); a == b {
		t.Errorf("two long names share %q", a)
	}
}
