package mcs

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/eastwest-dev/eastwest/pkg/about"
)

// The bounds of what eastwest keeps of a member's ClusterProperties. A
// member admin creates them; a ClusterSet's every view is translated
// from them, so they are bounded like any other input from a member.
const (
	// MaxProperties is how many properties of a member are read (by
	// name, in order; the ClusterSet's own come first).
	MaxProperties = 64
	// MaxPropertyValue is the longest value read (KEP-2149 allows
	// 128k; a region, a network or an ID is a few bytes).
	MaxPropertyValue = 1024
)

// boundedProperties is a member's properties within the bounds, and a
// warning for each one left out. The member's cluster ID and network are
// among them as the ClusterSet uses them (the ID from its member name, the
// network from configuration, when it declares neither): a selector on
// cluster.clusterset.k8s.io matches every member in the merge.
func boundedProperties(props map[string]string, id ClusterID, network string) (map[string]string, []string) {
	if id != "" || network != "" {
		props = maps.Clone(props)
		if props == nil {
			props = map[string]string{}
		}
		if id != "" {
			props[about.PropertyClusterID] = string(id)
		}
		if network != "" {
			props[about.PropertyNetwork] = network
		}
	}
	if len(props) == 0 {
		return nil, nil
	}
	out := make(map[string]string, min(len(props), MaxProperties))
	var warnings []string
	names := slices.Sorted(maps.Keys(props))
	// The ClusterSet's own first: never left out for others.
	own := []string{about.PropertyClusterID, about.PropertyClusterSet, about.PropertyNetwork}
	slices.SortStableFunc(names, func(a, b string) int {
		return cmp.Compare(ownRank(own, a), ownRank(own, b))
	})
	for _, name := range names {
		v := props[name]
		switch {
		case len(v) > MaxPropertyValue:
			warnings = append(warnings, fmt.Sprintf("property %s left out: its value is %d bytes, over %d", name, len(v), MaxPropertyValue))
		case len(out) >= MaxProperties:
			warnings = append(warnings, fmt.Sprintf("property %s left out: the member has more than %d properties", name, MaxProperties))
		default:
			out[name] = v
		}
	}
	return out, warnings
}

// ownRank orders the ClusterSet's own properties first.
func ownRank(own []string, name string) int {
	if i := slices.Index(own, name); i >= 0 {
		return i
	}
	return len(own)
}
