package assemble

import (
	"fmt"
	"strings"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// classifier tells what a service's change touches, from signatures of
// what each kind of resource is made of, as last translated: a change
// that leaves the shapeSignature alone changes the service's endpoints
// only; one that changes the gatewaySignature changes the east-west
// gateways' routing. A new field a translation reads goes into the
// signature beside it, here.
type classifier struct {
	shape    map[mcs.ServiceKey]string
	gateway  map[mcs.ServiceKey]string
	imported map[mcs.ServiceKey]bool
}

func newClassifier() *classifier {
	return &classifier{shape: map[mcs.ServiceKey]string{}, gateway: map[mcs.ServiceKey]string{}, imported: map[mcs.ServiceKey]bool{}}
}

// endpointsOnly returns the services of keys whose shape did not change
// (none when all: a new view, a new topology), and whether some shape
// changed. It records the new shapes.
func (c *classifier) endpointsOnly(state *mcs.State, keys []mcs.ServiceKey, all bool) (only map[mcs.ServiceKey]bool, shapeChanged bool) {
	only = map[mcs.ServiceKey]bool{}
	for _, key := range keys {
		sig := shapeSignature(state.Services.Get(key))
		if !all && sig != "" && c.shape[key] == sig {
			only[key] = true
		} else {
			shapeChanged = true
		}
		if sig == "" {
			delete(c.shape, key)
		} else {
			c.shape[key] = sig
		}
	}
	return only, shapeChanged
}

// routing reports whether the gateways' routing must be made again for
// the services of keys, and returns each one's change for metrics (an
// import gained or lost). It records the new signatures.
func (c *classifier) routing(state *mcs.State, keys []mcs.ServiceKey) (gatewayChanged bool, changes []ServiceChange) {
	for _, key := range keys {
		st := state.Services.Get(key)
		sig := gatewaySignature(st)
		if c.gateway[key] != sig {
			gatewayChanged = true
			if sig == "" {
				delete(c.gateway, key)
			} else {
				c.gateway[key] = sig
			}
		}
		has := st != nil && st.Import != nil
		delta := 0
		switch {
		case has && !c.imported[key]:
			delta, c.imported[key] = 1, true
		case !has && c.imported[key]:
			delta = -1
			delete(c.imported, key)
		}
		changes = append(changes, ServiceChange{Key: key, State: st, ImportDelta: delta})
	}
	return gatewayChanged, changes
}

// routed are the services the gateways route (those with a gateway
// signature).
func (c *classifier) routed(state *mcs.State) []*mcs.ServiceState {
	var out []*mcs.ServiceState
	for key := range c.gateway {
		out = append(out, state.Services.Get(key))
	}
	return out
}

// shapeSignature is what a service's clusters, listeners and routes are
// made of besides its endpoints: the import's type, affinity and ports,
// the members exporting each port (a tunnelling gateway has a tunnel
// cluster for the ports its member exports), and the members importing
// it (only their views have it). Empty for a service without an import.
func shapeSignature(st *mcs.ServiceState) string {
	if st == nil || st.Import == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %v %v:", st.Import.Type, st.Import.SessionAffinity, st.Import.Passthrough, st.Import.ImportedIn)
	for _, p := range st.Import.Ports {
		app := ""
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		fmt.Fprintf(&b, " %s/%s/%d/%s%v/%d", p.Name, p.Protocol, p.Port, app, p.Clusters, p.RelayPort)
	}
	return b.String()
}

// gatewaySignature changes when a service's gateway routes or tunnel
// filter chains would: its TCP ports, the members exporting them, or the
// members importing it come or go, or, under a strict cluster selection,
// which importers the selection admits (the tunnel's RBAC).
func gatewaySignature(st *mcs.ServiceState) string {
	if st == nil || st.Import == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v ", st.Import.ImportedIn)
	if st.Import.Passthrough {
		b.WriteString("passthrough ") // no HTTP route; tcp_proxy in the tunnel
	}
	if sel := st.Import.Selection; sel != nil && sel.Strict {
		for _, importer := range st.Import.ImportedIn {
			fmt.Fprintf(&b, "strict %s %v ", importer, st.Import.SelectorResults[importer])
		}
	}
	for _, p := range translate.ServedPorts(st) {
		// The members exporting a port: a tunnel listener serves the
		// ports its own member exports.
		fmt.Fprintf(&b, "%s%v,", translate.HostPort(st.Key, p.Port), p.Clusters)
	}
	return b.String()
}
