package mcs

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

func clusterProfile(name string, created time.Time, healthy metav1.ConditionStatus, props ...string) *cpv1a1.ClusterProfile {
	p := &cpv1a1.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "inventory", Name: name, CreationTimestamp: metav1.NewTime(created)}}
	for i := 0; i+1 < len(props); i += 2 {
		p.Status.Properties = append(p.Status.Properties, cpv1a1.Property{Name: props[i], Value: props[i+1]})
	}
	if healthy != "" {
		p.Status.Conditions = []metav1.Condition{{Type: cpv1a1.ClusterConditionControlPlaneHealthy, Status: healthy, Reason: "Probe"}}
	}
	return p
}

// A member's properties come from its own ClusterProperties, its
// ClusterProfile over them (with a warning for each value set aside) and
// the operator's over both; the profile may set what only the operator
// sets, the member may not; the profile's health is shown as it is
// (Unknown without the condition).
func TestProfileProperties(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		own      []string // name, value
		profile  *cpv1a1.ClusterProfile
		want     map[string]string
		warnings []string // substrings, in order
		health   string
	}{
		{name: "no profile: the member's own", own: []string{about.PropertyRegion, "eu-west-1"},
			want: map[string]string{about.PropertyRegion: "eu-west-1"}},
		{name: "the profile wins, with a warning", own: []string{about.PropertyRegion, "eu-west-1", about.PropertyZone, "z1"},
			profile:  clusterProfile("m", time.Unix(1, 0), metav1.ConditionTrue, about.PropertyRegion, "us-east-1"),
			want:     map[string]string{about.PropertyRegion: "us-east-1", about.PropertyZone: "z1"},
			warnings: []string{`region.topology.k8s.io="eu-west-1" of the member overridden by its ClusterProfile inventory/m ("us-east-1")`}, health: "True"},
		{name: "equal values: no warning", own: []string{about.PropertyRegion, "us-east-1"},
			profile: clusterProfile("m", time.Unix(1, 0), metav1.ConditionFalse, about.PropertyRegion, "us-east-1"),
			want:    map[string]string{about.PropertyRegion: "us-east-1"}, health: "False"},
		{name: "the operator wins over the profile", opts: Options{MemberProperties: map[string]map[string]string{"m": {about.PropertyRegion: "ap-south-1"}}},
			own:     []string{about.PropertyRegion, "eu-west-1"},
			profile: clusterProfile("m", time.Unix(1, 0), "", about.PropertyRegion, "us-east-1"),
			want:    map[string]string{about.PropertyRegion: "ap-south-1"}, health: "Unknown"},
		{name: "the profile sets an operator-only property, the member's is ignored", opts: Options{OperatorProperties: []string{about.PropertyJurisdiction}},
			own:      []string{about.PropertyJurisdiction, "EU"},
			profile:  clusterProfile("m", time.Unix(1, 0), metav1.ConditionTrue, about.PropertyJurisdiction, "US"),
			want:     map[string]string{about.PropertyJurisdiction: "US"},
			warnings: []string{"jurisdiction.eastwest.io=\"EU\" of the member ignored: only the operator sets"}, health: "True"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &world{t: t, s: NewStore(tc.opts)}
			for i := 0; i+1 < len(tc.own); i += 2 {
				w.upsert("m", property(tc.own[i], tc.own[i+1]))
			}
			if tc.profile != nil {
				w.upsert("m", tc.profile)
			}
			w.flush()
			info := w.s.State().Clusters[0]
			for k, v := range tc.want {
				if info.Properties[k] != v {
					t.Errorf("%s = %q, want %q (%v)", k, info.Properties[k], v, info.Properties)
				}
			}
			if len(info.PropertyWarnings) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %q", info.PropertyWarnings, tc.warnings)
			}
			for i, want := range tc.warnings {
				if !strings.Contains(info.PropertyWarnings[i], want) {
					t.Errorf("warning %q lacks %q", info.PropertyWarnings[i], want)
				}
			}
			if got := info.Profile; (got == nil) != (tc.profile == nil) || got != nil && (got.Status != tc.health || got.Name != "inventory/m") {
				t.Errorf("profile %+v, want health %q", got, tc.health)
			}
		})
	}
}

// Of members claiming one cluster ID, one without a ClusterProfile (the
// operator's own kubeconfig) keeps it, else the one with the older
// profile, whatever their names; the others are left out saying who has
// it, and the keeper is told who else claims it.
func TestDuplicateClusterIDsOlderProfileKeepsIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members map[string]*cpv1a1.ClusterProfile
		keeper  string
	}{
		{"older profile, later name", map[string]*cpv1a1.ClusterProfile{
			"a": clusterProfile("a", time.Unix(200, 0), metav1.ConditionTrue, about.PropertyClusterID, "one"),
			"z": clusterProfile("z", time.Unix(100, 0), metav1.ConditionTrue, about.PropertyClusterID, "one"),
		}, "z"},
		{"no profile beats a profile", map[string]*cpv1a1.ClusterProfile{
			"a": clusterProfile("a", time.Unix(100, 0), metav1.ConditionTrue, about.PropertyClusterID, "one"),
			"z": nil,
		}, "z"},
		{"same age: by name", map[string]*cpv1a1.ClusterProfile{
			"b": clusterProfile("b", time.Unix(100, 0), metav1.ConditionTrue, about.PropertyClusterID, "one"),
			"c": clusterProfile("c", time.Unix(100, 0), metav1.ConditionTrue, about.PropertyClusterID, "one"),
		}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			for name, p := range tc.members {
				if p == nil {
					w.upsert(name, property(about.PropertyClusterID, "one"))
				} else {
					w.upsert(name, p)
				}
			}
			w.flush()
			for _, c := range w.s.State().Clusters {
				if c.Member == tc.keeper {
					if c.ID != "one" || len(c.PropertyWarnings) != 1 || !strings.Contains(c.PropertyWarnings[0], "too: left out") {
						t.Errorf("keeper %s: ID %q, warnings %q", c.Member, c.ID, c.PropertyWarnings)
					}
					continue
				}
				if c.ID != "" || !strings.Contains(c.Error, `already used by member "`+tc.keeper+`"`) {
					t.Errorf("%s: ID %q, error %q; want left out for %s", c.Member, c.ID, c.Error, tc.keeper)
				}
			}
		})
	}
}
