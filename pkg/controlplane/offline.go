package controlplane

import (
	"errors"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// apply gives a source event to the store that owns its object: Gateway
// API objects and TLS Secrets to the gateway store, the MCS inputs to the
// MCS store, Namespaces, Services (the gateway store keeps those in front
// of Gateways) and member joins and leaves to both.
func apply(ev mcs.Event, store *mcs.Store, gw *gateway.Store) error {
	var both bool
	switch ev.Object.(type) {
	case *corev1.Namespace, *corev1.Service:
		both = true
	}
	toGateway := ev.Op == mcs.OpLeave || ev.Op == mcs.OpJoin || both || (ev.Object != nil && gateway.Handles(ev.Object))
	toMCS := ev.Object == nil || both || !gateway.Handles(ev.Object)
	var errs []error
	if toGateway {
		errs = append(errs, gw.Apply(ev))
	}
	if toMCS {
		errs = append(errs, store.Apply(ev))
	}
	return errors.Join(errs...)
}

// Offline is what serve computes, without clients or clocks: the same
// stores, merge, Gateway API build and translation, all at once. It backs
// `xds translate` and whole-pipeline golden tests.
type Offline struct {
	store   *mcs.Store
	gw      *gateway.Store
	state   *mcs.State
	results map[string]gateway.Result
}

// NewOffline returns an empty Offline.
func NewOffline(opts mcs.Options) *Offline {
	return &Offline{store: mcs.NewStore(opts), gw: gateway.NewStore(), results: map[string]gateway.Result{}}
}

// Apply records a source event.
func (o *Offline) Apply(ev mcs.Event) error { return apply(ev, o.store, o.gw) }

// Flush merges everything applied and builds every member's Gateway API
// result; it returns the merged state.
func (o *Offline) Flush() *mcs.State {
	o.store.Flush()
	o.gw.TakeDirty()
	o.state = o.store.Snapshot()
	clear(o.results)
	for _, m := range o.gw.Members() {
		o.results[m] = gateway.Build(o.gw.Inputs(m), lookup{state: o.state, store: o.store, member: m})
	}
	return o.state
}

// Statuses returns a member's Gateway API statuses as of the last Flush.
func (o *Offline) Statuses(member string) []gateway.Status { return o.results[member].Statuses }

// Views returns every view the state has: each member's client and
// gateway views and a gateway-api view per programmed Gateway.
func (o *Offline) Views(gatewayPort uint32) []translate.View {
	var out []translate.View
	for _, id := range o.state.ClusterIDs() {
		for _, r := range roles {
			out = append(out, translate.View{Cluster: id, Role: r, GatewayPort: gatewayPort})
		}
	}
	for _, m := range slices.Sorted(maps.Keys(o.results)) {
		id := clusterOf(o.state, m)
		if id == "" {
			continue
		}
		for _, gw := range o.results[m].Gateways {
			out = append(out, translate.View{Cluster: id, Role: translate.RoleGatewayAPI, Gateway: translate.GatewayAPIView(gw.Key)})
		}
	}
	return out
}

// View returns every resource of a view, as its clients get them.
func (o *Offline) View(v translate.View) translate.Result {
	member := ""
	for _, c := range o.state.Clusters {
		if c.ID == v.Cluster {
			member = c.Member
		}
	}
	if v.Role == translate.RoleGatewayAPI {
		for _, gw := range o.results[member].Gateways {
			if translate.GatewayAPIView(gw.Key) == v.Gateway {
				return translate.GatewayAPI(gw, v, translate.Backends{State: o.state, Local: func(k mcs.ServiceKey) (*mcs.Service, []*mcs.Slice) { return o.store.Local(member, k) }})
			}
		}
		return translate.Result{}
	}
	mesh := o.results[member].Mesh
	return translate.AllWith(o.state, v, func(st *mcs.ServiceState) translate.ServiceOptions {
		if st == nil || len(mesh[st.Key]) == 0 {
			return translate.ServiceOptions{}
		}
		return translate.ServiceOptions{
			Routes: func(port int32) []*gateway.RouteRule { return gateway.MeshRules(mesh[st.Key], port) },
			Import: func(k mcs.ServiceKey) *mcs.Import {
				if s := o.state.Services.Get(k); s != nil {
					return s.Import
				}
				return nil
			},
		}
	})
}
