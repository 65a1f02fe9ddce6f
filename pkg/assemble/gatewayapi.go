package assemble

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// gatewayAPI schedules the Gateway API's work: which members' Gateways
// and routes to build again (gatewayapi.Build), which of their backends'
// clusters to translate again, which client services' mesh routes
// changed, and the gateway-api views of the Gateways eastwest programs.
type gatewayAPI struct {
	store *gatewayapi.Store
	// results is what gatewayapi.Build made of each member's objects.
	results map[string]gatewayapi.Result
	// views are the published gateway-api view names.
	views map[string]bool
	// refSig is, by member, each referenced service's refSignature as
	// last built.
	refSig map[string]map[mcs.ServiceKey]string
	// routesDirty are the services whose mesh routes changed.
	routesDirty map[mcs.ServiceKey]bool
}

func newGatewayAPI() *gatewayAPI {
	return &gatewayAPI{
		store:       gatewayapi.NewStore(),
		results:     map[string]gatewayapi.Result{},
		views:       map[string]bool{},
		refSig:      map[string]map[mcs.ServiceKey]string{},
		routesDirty: map[mcs.ServiceKey]bool{},
	}
}

// build runs gatewayapi.Build for the members that need it and returns them:
// those whose Gateway API objects changed, and those whose routes name a
// service whose refSignature changed. A referenced service whose
// endpoints alone changed needs no build: it is returned in backends, by
// member, and only its clusters are translated again. A member's mesh
// parents, old and new, get their client routes translated again.
func (g *gatewayAPI) build(state *mcs.State, store *mcs.Store, ch mcs.Changes) (rebuilt []string, backends map[string]map[mcs.ServiceKey]bool) {
	dirty := map[string]bool{}
	for _, m := range g.store.TakeDirty() {
		dirty[m] = true
	}
	backends = map[string]map[mcs.ServiceKey]bool{}
	for m, r := range g.results {
		if ch.Clusters {
			dirty[m] = true
			continue
		}
		for _, k := range ch.Touched {
			if !r.Refs[k] || dirty[m] {
				continue
			}
			if refSignature(state, store, m, k, r.Fronts[k]) != g.refSig[m][k] {
				dirty[m] = true
				continue
			}
			if backends[m] == nil {
				backends[m] = map[mcs.ServiceKey]bool{}
			}
			backends[m][k] = true
		}
	}
	for _, m := range slices.Sorted(maps.Keys(dirty)) {
		delete(backends, m)
		old := g.results[m]
		for k := range old.Mesh {
			g.routesDirty[k] = true
		}
		in := g.store.Inputs(m)
		if in == nil {
			delete(g.results, m)
			delete(g.refSig, m)
			rebuilt = append(rebuilt, m)
			continue
		}
		r := gatewayapi.Build(in, lookup{state: state, store: store, member: m})
		for k := range r.Mesh {
			g.routesDirty[k] = true
		}
		g.results[m] = r
		sigs := map[mcs.ServiceKey]string{}
		for k := range r.Refs {
			sigs[k] = refSignature(state, store, m, k, r.Fronts[k])
		}
		g.refSig[m] = sigs
		rebuilt = append(rebuilt, m)
	}
	return rebuilt, backends
}

// refSignature is what gatewayapi.Build reads of a service for a member (the
// key of build's "does this change need a build"): the import's ports and
// affinity, and the member's own Service's, and for a Service in front of
// a Gateway's Envoys (front) whether it has a ready endpoint (the
// Gateway's Programmed condition). Endpoints are not in it otherwise: a
// backend's change its clusters, not the routes. A field
// gatewayapi.Build starts to read goes here.
func refSignature(state *mcs.State, store *mcs.Store, member string, k mcs.ServiceKey, front bool) string {
	var b strings.Builder
	if st := state.Services.Get(k); st != nil && st.Import != nil {
		fmt.Fprintf(&b, "import %s %s:", st.Import.Type, st.Import.SessionAffinity)
		for _, p := range st.Import.Ports {
			fmt.Fprintf(&b, " %s/%s/%d", p.Name, p.Protocol, p.Port)
		}
	}
	if svc, _ := store.Local(member, k); svc != nil {
		fmt.Fprintf(&b, "; local %s:", svc.SessionAffinity)
		for _, p := range svc.Ports {
			fmt.Fprintf(&b, " %s/%s/%d", p.Name, p.Protocol, p.Port)
		}
		if front {
			fmt.Fprintf(&b, "; ready %v", localReady(store, member, k))
		}
	}
	return b.String()
}

// lookup is what gatewayapi.Build reads: the ClusterSet's imports and the
// member's own Services.
type lookup struct {
	state  *mcs.State
	store  *mcs.Store
	member string
}

func (l lookup) Import(k mcs.ServiceKey) *mcs.Import {
	if st := l.state.Services.Get(k); st != nil {
		return st.Import
	}
	return nil
}

func (l lookup) Service(k mcs.ServiceKey) *mcs.Service {
	svc, _ := l.store.Local(l.member, k)
	return svc
}

func (l lookup) Ready(k mcs.ServiceKey) bool { return localReady(l.store, l.member, k) }

// localReady says whether the member's own Service has a ready endpoint.
func localReady(store *mcs.Store, member string, k mcs.ServiceKey) bool {
	_, slices := store.Local(member, k)
	for _, s := range slices {
		for i := range s.Len() {
			if s.Endpoint(i).Ready {
				return true
			}
		}
	}
	return false
}

// gatewayViews are the gateway-api views: one per Gateway eastwest
// programs, in its member's cluster; base gives them the network and the
// listen address.
func (g *gatewayAPI) gatewayViews(state *mcs.State, base translate.View) []translate.View {
	var out []translate.View
	for _, m := range slices.Sorted(maps.Keys(g.results)) {
		id := clusterOf(state, m)
		if id == "" {
			continue
		}
		for _, gw := range g.results[m].Gateways {
			out = append(out, g.view(id, gw, base))
		}
	}
	return out
}

// view is the gateway-api view of a Gateway in a cluster.
func (g *gatewayAPI) view(id mcs.ClusterID, gw *gatewayapi.Gateway, base translate.View) translate.View {
	return translate.View{Cluster: id, Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key), Net: base.Net, ListenAddress: base.ListenAddress}
}

// viewsChanged reports whether the Gateways eastwest programs differ from
// the published views.
func (g *gatewayAPI) viewsChanged(state *mcs.State, base translate.View) bool {
	now := g.gatewayViews(state, base)
	if len(now) != len(g.views) {
		return true
	}
	for _, v := range now {
		if !g.views[v.String()] {
			return true
		}
	}
	return false
}

// meshParents returns every service some member's mesh route attaches to.
func (g *gatewayAPI) meshParents() []mcs.ServiceKey {
	seen := map[mcs.ServiceKey]bool{}
	for _, r := range g.results {
		for k := range r.Mesh {
			seen[k] = true
		}
	}
	return slices.SortedFunc(maps.Keys(seen), mcs.ServiceKey.Compare)
}

// clusterOf returns a member's cluster ID ("" while it is left out).
func clusterOf(state *mcs.State, member string) mcs.ClusterID {
	for _, c := range state.Clusters {
		if c.Member == member {
			return c.ID
		}
	}
	return ""
}
