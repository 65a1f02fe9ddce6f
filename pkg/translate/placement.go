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

// place is what a member's rank means: which tier, and how its weight
// came about. Explain puts it in words (describe); a translation never
// does.
type place struct {
	kind   placeKind
	index  int // the selector, for bySelector
	weight weightKind
	zone   zoneKind
}

// zoneKind is where a locality of the view's own member stands to its
// clients' zone (trafficDistribution).
type zoneKind int

const (
	anyZone      zoneKind = iota
	clientZone            // the endpoints for the view's clients' zone
	otherZones            // the member's other endpoints: the sub-tier after
	unknownZones          // a member behind gateways: the sub-tier after
)

// zoneNote says which of its member's endpoints a locality holds when
// the clients' zone split them.
func (p place) zoneNote(zone string) string {
	switch p.zone {
	case clientZone:
		return ", its endpoints for zone " + zone + " (trafficDistribution: the client's zone first)"
	case otherZones:
		return ", its endpoints for other zones than " + zone + " (trafficDistribution: after the client's zone)"
	case unknownZones:
		return ", behind its gateways, zones not known (trafficDistribution: after endpoints of the client's zone " + zone + ")"
	}
	return ""
}

type placeKind int

const (
	thisMember placeKind = iota
	otherMembers
	oneTier
	bySelector
	lastResort
	outsideStrict
	drained
	onlyDraining
)

type weightKind int

const (
	endpointWeight weightKind = iota // its ready endpoints
	declaredWeight
	defaultWeight // the service declares weights, its export none
)

// rank is a member's tier: with no selection, the view's own member 0 and
// the others 1, or all 0 when the service declares weights (its weights
// then split all of its traffic: a canary's 10% is 10% of every
// member's clients'); with a selection, the first selector listing it,
// then the last resort (len(results)) for the others, or false (left
// out) when the selection is strict.
func (t tiers) rank(c mcs.ClusterID) (int, place, bool) {
	switch {
	case t.none:
		return 0, place{kind: thisMember}, true
	case t.selection == nil && t.weighted:
		return 0, place{kind: oneTier}, true
	case t.selection == nil && c == t.local:
		return 0, place{kind: thisMember}, true
	case t.selection == nil:
		return 1, place{kind: otherMembers}, true
	}
	i, outside := mcs.Tier(t.results, c)
	switch {
	case outside && t.selection.Strict:
		return 0, place{kind: outsideStrict}, false
	case outside:
		return i, place{kind: lastResort}, true
	}
	return i, place{kind: bySelector, index: i}, true
}

// describe puts a place in explain's words.
func (t tiers) describe(p place) string {
	switch p.kind {
	case thisMember:
		return "this member"
	case otherMembers:
		return "other members"
	case oneTier:
		return "one tier: the service declares weights and no cluster selectors"
	case bySelector:
		return fmt.Sprintf("cluster selector %d (%s)", p.index+1, t.selection.Selectors[p.index])
	case lastResort:
		return "no cluster selector matches it: the last resort"
	case outsideStrict:
		return "no cluster selector of the service matches it for this member, and the selection is strict (" + mcs.AnnotationClusterSelectorsStrict + "): traffic never leaves the selected clusters"
	case drained:
		return "drained (weight 0): used when no member of any tier has a ready endpoint"
	case onlyDraining:
		return "only draining endpoints: used when no other member has a ready one"
	}
	return ""
}

// weightNote says where a weighted member's weight came from.
func (p place) weightNote(w uint32) string {
	switch p.weight {
	case declaredWeight:
		return fmt.Sprintf(", declared weight %d", w)
	case defaultWeight:
		return fmt.Sprintf(", weight %d (its export declares none)", w)
	}
	return ""
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
