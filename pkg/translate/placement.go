package translate

import (
	"fmt"
	"slices"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// Placement is translate's decision about one member's endpoints of one
// port in one view: the priority, tier and weight it gave them, or why it
// left them out. Explain prints these; they come from the same code that
// builds the load assignment (assign), so that what explain says is what
// the view is served.
type Placement struct {
	Member mcs.ClusterID `json:"member"`
	// Priority is the EDS priority of the member's locality; -1 when it
	// is left out (Why says why).
	Priority int    `json:"priority"`
	Tier     string `json:"tier,omitempty"`
	Weight   uint32 `json:"weight,omitempty"`
	Why      string `json:"why,omitempty"`
}

// Placements returns, for each port of the service a view is served (by
// cluster name), where each exporting member's endpoints are and why:
// the decisions loadAssignment makes, recorded. It is computed when asked
// (explain), not kept beside every view's resources, which would cost
// memory in proportion to views x services x members for what is read
// once in a while; the state and views it is computed from are the
// served ones.
func Placements(st *mcs.ServiceState, v View) map[string][]Placement {
	if !ImportedBy(st, v) {
		return nil
	}
	out := map[string][]Placement{}
	for name, p := range ServedPorts(st) {
		var rec []Placement
		assign(name, st, p, v, false, &rec)
		slices.SortStableFunc(rec, func(a, b Placement) int {
			// Served first, by priority; then the members left out.
			switch {
			case a.Priority < 0 && b.Priority >= 0:
				return 1
			case b.Priority < 0 && a.Priority >= 0:
				return -1
			}
			return a.Priority - b.Priority
		})
		out[name] = rec
	}
	return out
}

// tiers are a service's tiers as one view's member sees them: the rank of
// each exporting member before priorities are made contiguous.
type tiers struct {
	local mcs.ClusterID
	// selection and results are the service's cluster selection and its
	// results for the view's member (nil: the default tiers).
	selection *mcs.Selection
	results   []mcs.SelectorResult
	// weighted: an exporter declares a weight (mcs.ServiceState.Weighted).
	weighted bool
	// none: no tiers at all (localOnly: one member).
	none bool
}

// tiersFor returns the view's tiers of a service.
func tiersFor(st *mcs.ServiceState, v View, localOnly bool) tiers {
	t := tiers{local: v.Cluster, none: localOnly}
	if localOnly || st.Import == nil {
		t.none = true
		return t
	}
	t.weighted = st.Weighted()
	if sel := st.Import.Selection; sel != nil {
		t.selection, t.results = sel, st.Import.SelectorResults[v.Cluster]
	}
	return t
}

// rank is a member's tier: with no selection, the view's own member 0 and
// the others 1, or all 0 when the service declares weights (its weights
// then split all of its traffic: a canary's 10% is 10% of every
// member's clients'); with a selection, the first selector listing it,
// then the last resort (len(results)) for the others, or false (left
// out, the reason in the string) when the selection is strict.
func (t tiers) rank(c mcs.ClusterID) (int, string, bool) {
	switch {
	case t.none:
		return 0, "this member", true
	case t.selection == nil && t.weighted:
		return 0, "one tier: the service declares weights and no cluster selectors", true
	case t.selection == nil && c == t.local:
		return 0, "this member", true
	case t.selection == nil:
		return 1, "other members", true
	}
	i, outside := mcs.Tier(t.results, c)
	switch {
	case outside && t.selection.Strict:
		return 0, "no cluster selector of the service matches it for this member, and the selection is strict (" + mcs.AnnotationClusterSelectorsStrict + "): traffic never leaves the selected clusters", false
	case outside:
		return i, "no cluster selector matches it: the last resort", true
	}
	return i, fmt.Sprintf("cluster selector %d (%s)", i+1, t.selection.Selectors[i]), true
}

// drained is the rank of drained members: after every tier.
func (t tiers) drained() int {
	switch {
	case t.selection == nil && t.weighted:
		return 1
	case t.selection == nil:
		return 2
	}
	return len(t.results) + 1
}

// last is the rank of members with only draining endpoints.
func (t tiers) last() int { return t.drained() + 1 }
