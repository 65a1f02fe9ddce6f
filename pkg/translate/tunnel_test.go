package translate

import (
	"regexp"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// The tunnel listener admits only the gateway identities of this
// ClusterSet's members, compared as Envoy compares them (exact strings,
// or an RE2 full match when the ClusterSet's name is open). Before, a
// regex admitted any role/gateway identity of any cluster, members or
// not (finding 10 of the trust-boundaries issue), and the xDS check read
// "...role/gateway?x" as a gateway (finding 5).
func TestPeerMatchers(t *testing.T) {
	members := map[mcs.ClusterID]NetworkMember{"east": {}, "west": {}}
	const west = "spiffe://eastwest.io/clusterset/demo/cluster/west/role/gateway"
	tests := map[string]struct {
		uri  string
		set  bool // accepted with the ClusterSet named demo
		open bool // accepted with the ClusterSet's name open
	}{
		"a member's gateway":          {uri: west, set: true, open: true},
		"another ClusterSet":          {uri: "spiffe://eastwest.io/clusterset/other/cluster/west/role/gateway", open: true},
		"a non-member":                {uri: "spiffe://eastwest.io/clusterset/demo/cluster/north/role/gateway"},
		"a member's client":           {uri: "spiffe://eastwest.io/clusterset/demo/cluster/west/role/client"},
		"a query":                     {uri: west + "?x"},
		"a fragment":                  {uri: west + "#x"},
		"a member prefix":             {uri: "spiffe://eastwest.io/clusterset/demo/cluster/westx/role/gateway"},
		"an upper-case scheme":        {uri: "SPIFFE://eastwest.io/clusterset/demo/cluster/west/role/gateway"},
		"another trust domain":        {uri: "spiffe://evil.example/clusterset/demo/cluster/west/role/gateway"},
		"a slash in the ClusterSet":   {uri: "spiffe://eastwest.io/clusterset/a/b/cluster/west/role/gateway"},
		"percent-encoding in the set": {uri: "spiffe://eastwest.io/clusterset/d%65mo/cluster/west/role/gateway"},
	}
	accepts := func(t *Topology, uri string) bool {
		for _, m := range t.PeerMatchers() {
			if ex := m.GetMatcher().GetExact(); ex != "" && ex == uri {
				return true
			}
			if re := m.GetMatcher().GetSafeRegex().GetRegex(); re != "" && regexp.MustCompile(re).MatchString(uri) {
				return true
			}
		}
		return false
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := accepts(&Topology{ClusterSet: "demo", Members: members}, tc.uri); got != tc.set {
				t.Errorf("ClusterSet demo: accepted %v, want %v", got, tc.set)
			}
			if got := accepts(&Topology{Members: members}, tc.uri); got != tc.open {
				t.Errorf("ClusterSet open: accepted %v, want %v", got, tc.open)
			}
		})
	}
}
