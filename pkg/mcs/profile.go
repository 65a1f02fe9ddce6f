package mcs

import (
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
)

// Profile is what the Store keeps of a member's ClusterProfile (KEP-4322,
// from the fleet's inventory): its properties, when it was created, and
// whether the fleet manager finds the member's control plane healthy.
type Profile struct {
	// Name is the profile's namespace/name.
	Name       string
	Created    time.Time
	Properties map[string]string
	Health     ProfileHealth
}

// ProfileHealth is a ClusterProfile's ControlPlaneHealthy condition.
type ProfileHealth struct {
	// Status is True, False or Unknown (Unknown too when the profile has
	// no such condition).
	Status  string `json:"controlPlaneHealthy"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Healthy reports whether the fleet manager says the member's control
// plane is healthy.
func (h ProfileHealth) Healthy() bool { return h.Status == "True" }

// ProfileInfo is a member's ClusterProfile as ClusterInfo shows it.
type ProfileInfo struct {
	Name string `json:"name"`
	ProfileHealth
}

func profileFrom(o *cpv1a1.ClusterProfile) *Profile {
	p := &Profile{Name: o.Namespace + "/" + o.Name, Created: o.CreationTimestamp.Time, Properties: map[string]string{}, Health: ProfileHealth{Status: "Unknown"}}
	for _, prop := range o.Status.Properties {
		// The profile's property names are the About API's (KEP-4322):
		// the same names as a member's ClusterProperties.
		if name := strings.TrimSpace(prop.Name); name != "" {
			p.Properties[name] = prop.Value
		}
	}
	if c := meta.FindStatusCondition(o.Status.Conditions, cpv1a1.ClusterConditionControlPlaneHealthy); c != nil {
		p.Health = ProfileHealth{Status: string(c.Status), Reason: c.Reason, Message: c.Message}
	}
	return p
}

func (p *Profile) info() *ProfileInfo {
	if p == nil {
		return nil
	}
	return &ProfileInfo{Name: p.Name, ProfileHealth: p.Health}
}

// olderFirst orders members for their cluster IDs: a member without a
// ClusterProfile (the operator's own kubeconfig or remote Secret) first,
// then by their profiles' age, then by name. Of two members claiming one
// ID, the first keeps it.
func (s *Store) olderFirst(a, b string) int {
	pa, pb := s.members[a].profile, s.members[b].profile
	switch {
	case pa == nil && pb != nil:
		return -1
	case pa != nil && pb == nil:
		return 1
	case pa != nil && !pa.Created.Equal(pb.Created):
		return pa.Created.Compare(pb.Created)
	}
	return strings.Compare(a, b)
}
