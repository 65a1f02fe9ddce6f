package assemble

import (
	"maps"
	"slices"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/resource"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// Update changes one type of one view: Set adds or replaces resources,
// Delete removes names. It is resource.Update: the cache applies a Plan's
// Updates as they are.
type Update = resource.Update

// ServiceChange is a service that changed in a Flush, for metrics.
type ServiceChange struct {
	Key   mcs.ServiceKey
	State *mcs.ServiceState // nil: gone
	// ImportDelta is +1 when the service gained its import, -1 when it
	// lost it.
	ImportDelta int
}

// ViewInvalid is a resource of a view that failed validation.
type ViewInvalid struct {
	View string
	translate.Invalid
}

// Plan is what one Flush made: the updates to publish, in order (new and
// changed resources secrets, clusters, endpoints, listeners, routes; then
// deletions in reverse: make before break), the views when they changed,
// the merged state and what changed in it.
type Plan struct {
	Updates []Update
	// Views lists every view's name when the set of views changed (nil:
	// unchanged).
	Views   []string
	State   *mcs.State
	Changes mcs.Changes
	// Changed says whether anything served or reported changed.
	Changed bool
	// Services are the services merged again, for metrics.
	Services []ServiceChange
	// Rebuilt are the members whose Gateway API results were built again
	// (their statuses may have changed).
	Rebuilt []string
	// Invalid are the resources that failed validation in this Flush
	// (their previous versions, if any, stay published).
	Invalid []ViewInvalid
	// Translated counts the resources this Flush translated (valid or
	// not): what a change cost, before the cache skips what did not
	// change.
	Translated int
}

// planBuilder is the Plan of the Flush in progress, with what it sets and
// deletes by type and view until ordered makes its Updates.
type planBuilder struct {
	Plan
	sets map[string]map[string][]translate.Resource // type -> view -> resources
	dels map[string]map[string][]string             // type -> view -> names
}

func newPlanBuilder() *planBuilder {
	return &planBuilder{sets: map[string]map[string][]translate.Resource{}, dels: map[string]map[string][]string{}}
}

// set publishes a resource in a view.
func (p *planBuilder) set(view string, r translate.Resource) {
	if p.sets[r.Type] == nil {
		p.sets[r.Type] = map[string][]translate.Resource{}
	}
	p.sets[r.Type][view] = append(p.sets[r.Type][view], r)
}

// del withdraws a resource from a view.
func (p *planBuilder) del(view, typ, name string) {
	if p.dels[typ] == nil {
		p.dels[typ] = map[string][]string{}
	}
	p.dels[typ][view] = append(p.dels[typ][view], name)
}

// ordered lists the updates make before break: new and changed resources
// secrets, clusters, endpoints, listeners, routes; then the deletions in
// the reverse order.
func (p *planBuilder) ordered() []Update {
	var out []Update
	for _, typ := range translate.TypeOrder() {
		for _, view := range slices.Sorted(maps.Keys(p.sets[typ])) {
			out = append(out, Update{View: view, Type: typ, Set: p.sets[typ][view]})
		}
	}
	for _, typ := range slices.Backward(translate.TypeOrder()) {
		for _, view := range slices.Sorted(maps.Keys(p.dels[typ])) {
			out = append(out, Update{View: view, Type: typ, Delete: p.dels[typ][view]})
		}
	}
	return out
}
