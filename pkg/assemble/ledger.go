package assemble

import (
	"maps"
	"slices"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// ledger is, per view, what is published: each key's resources (a
// service's; the zero key for what a view has once, its gateway listeners
// say), the clusters a route may name, the resources that failed
// validation (their previous versions stay), and, with keep, every
// resource's message (View).
type ledger struct {
	keep      bool
	published map[string]map[mcs.ServiceKey][]ref // view -> key -> published resources
	clusters  map[string]map[string]bool          // view -> published cluster names
	invalid   map[string]map[mcs.ServiceKey][]translate.Invalid
	current   map[string]map[string]map[string]proto.Message // view -> type -> name -> message
}

type ref struct{ typ, name string }

func newLedger(keep bool) *ledger {
	return &ledger{
		keep:      keep,
		published: map[string]map[mcs.ServiceKey][]ref{},
		clusters:  map[string]map[string]bool{},
		invalid:   map[string]map[mcs.ServiceKey][]translate.Invalid{},
		current:   map[string]map[string]map[string]proto.Message{},
	}
}

// hasCluster reports whether a view publishes a cluster of that name.
func (l *ledger) hasCluster(view, name string) bool { return l.clusters[view][name] }

// keys are the keys a view publishes something under, sorted.
func (l *ledger) keys(view string) []mcs.ServiceKey {
	return slices.SortedFunc(maps.Keys(l.published[view]), mcs.ServiceKey.Compare)
}

// record adds to the plan what a translation made in a view under a key,
// and the deletion of what the key had and no longer has. A resource that
// fails validation keeps its previous version. only, when set, is the one
// type translated (an endpoint-only change): the key's resources of other
// types, and their validation failures, stay as they are.
func (l *ledger) record(p *planBuilder, view string, key mcs.ServiceKey, r translate.Result, only string) {
	p.Translated += len(r.Resources) + len(r.Invalid)
	keep := map[ref]bool{}
	var refs []ref
	for _, res := range r.Resources {
		rf := ref{res.Type, res.Name}
		keep[rf] = true
		refs = append(refs, rf)
		p.set(view, res)
	}
	for _, inv := range r.Invalid {
		keep[ref{inv.Type, inv.Name}] = true
	}
	if l.published[view] == nil {
		l.published[view] = map[mcs.ServiceKey][]ref{}
		l.clusters[view] = map[string]bool{}
		l.invalid[view] = map[mcs.ServiceKey][]translate.Invalid{}
	}
	for _, old := range l.published[view][key] {
		switch {
		case only != "" && old.typ != only:
			refs = append(refs, old) // not translated: stays as it is
		case !keep[old]:
			p.del(view, old.typ, old.name)
			if old.typ == resourcev3.ClusterType {
				delete(l.clusters[view], old.name)
			}
		case !slices.Contains(refs, old):
			refs = append(refs, old) // invalid now: its previous version stays
		}
	}
	for _, rf := range refs {
		if rf.typ == resourcev3.ClusterType {
			l.clusters[view][rf.name] = true
		}
	}
	if len(refs) == 0 {
		delete(l.published[view], key)
	} else {
		l.published[view][key] = refs
	}
	invalid := r.Invalid
	if only != "" {
		for _, inv := range l.invalid[view][key] {
			if inv.Type != only {
				invalid = append(invalid, inv)
			}
		}
	}
	if len(invalid) == 0 {
		delete(l.invalid[view], key)
	} else {
		l.invalid[view][key] = invalid
		for _, inv := range r.Invalid {
			p.Invalid = append(p.Invalid, ViewInvalid{View: view, Invalid: inv})
		}
	}
}

// forget drops what the views that are gone had published.
func (l *ledger) forget(views []string) {
	for name := range l.published {
		if !slices.Contains(views, name) {
			delete(l.published, name)
			delete(l.clusters, name)
			delete(l.invalid, name)
		}
	}
}

// commit records a Plan's updates in the views' current resources (with
// keep); views, when the set of views changed, are the ones that remain.
func (l *ledger) commit(updates []Update, viewsChanged bool, views []string) {
	if !l.keep {
		return
	}
	for _, u := range updates {
		byType := l.current[u.View]
		if byType == nil {
			byType = map[string]map[string]proto.Message{}
			l.current[u.View] = byType
		}
		res := byType[u.Type]
		if res == nil {
			res = map[string]proto.Message{}
			byType[u.Type] = res
		}
		for _, r := range u.Set {
			res[r.Name] = r.Message
		}
		for _, n := range u.Delete {
			delete(res, n)
		}
	}
	if viewsChanged {
		for name := range l.current {
			if !slices.Contains(views, name) {
				delete(l.current, name)
			}
		}
	}
}

// view is a view's current resources, sorted by type (make-before-break
// order) then name.
func (l *ledger) view(name string) []translate.Resource {
	var out []translate.Resource
	for _, typ := range translate.TypeOrder() {
		res := l.current[name][typ]
		for _, n := range slices.Sorted(maps.Keys(res)) {
			out = append(out, translate.Resource{Type: typ, Name: n, Message: res[n]})
		}
	}
	return out
}

// invalidByView is every view's resources that failed validation.
func (l *ledger) invalidByView() map[string][]translate.Invalid {
	out := map[string][]translate.Invalid{}
	for view, bySvc := range l.invalid {
		for _, list := range bySvc {
			out[view] = append(out[view], list...)
		}
	}
	return out
}
