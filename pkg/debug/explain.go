package debug

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// Explanation is /debug/explain: the chain from each cluster's export to
// the import, to the Envoy resources made from it in every view, to the
// clients that acknowledged them.
type Explanation struct {
	Service string `json:"service"`
	// Node, when set, narrows the explanation to one connected client:
	// its view alone and what it has of it ("why does this gateway send
	// traffic there?").
	Node string `json:"node,omitempty"`
	// NodeView is the view that node reads.
	NodeView string `json:"nodeView,omitempty"`
	// NodeNote says why the node's view has nothing of the service.
	NodeNote   string `json:"nodeNote,omitempty"`
	Generation uint64 `json:"generation"`
	// Members are the properties of the members that export or import
	// the service (what its cluster selectors match).
	Members map[mcs.ClusterID]map[string]string `json:"members,omitempty"`
	// Profiles are, for the same members, their ClusterProfiles when they
	// come from the fleet's inventory: the fleet manager's word on their
	// control planes (shown, never acted on).
	Profiles map[mcs.ClusterID]*mcs.ProfileInfo `json:"profiles,omitempty"`
	MCS      ServiceView                        `json:"mcs"`
	Views    []ViewExplanation                  `json:"views"`
	Clients  []ClientResources                  `json:"clients"`
	// Routes are the Gateway API routes that name the service (as a
	// backend or a mesh parent), with the status eastwest gives them.
	Routes []RouteExplanation `json:"routes,omitempty"`
}

// RouteExplanation is one route naming the service, and its status.
type RouteExplanation struct {
	Member  string   `json:"member"`
	Route   string   `json:"route"`
	Parents []string `json:"parents"`
}

// ViewExplanation is what one view serves of the service.
type ViewExplanation struct {
	View      string            `json:"view"`
	Resources []ResourceSummary `json:"resources"`
	Invalid   []string          `json:"invalid,omitempty"`
}

// ResourceSummary is one served resource and what it says.
type ResourceSummary struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Since   uint64   `json:"since"`
	Detail  []string `json:"detail,omitempty"`
}

// ClientResources says whether one client has the service's resources.
type ClientResources struct {
	// Replica is the control-plane replica the client is connected to,
	// when the CLI gathers every replica's (xds explain --kubeconfig).
	Replica string   `json:"replica,omitempty"`
	Node    string   `json:"node"`
	View    string   `json:"view"`
	State   string   `json:"state"`
	Have    int      `json:"have"`
	Of      int      `json:"of"`
	Missing []string `json:"missing,omitempty"`
	Nacks   []string `json:"nacks,omitempty"`
}

func (h *Handler) explain(w http.ResponseWriter, r *http.Request) {
	key, err := parseService(r.URL.Query().Get("service"))
	if err != nil {
		fail(w, http.StatusBadRequest, "service=NAMESPACE/NAME is required: %v", err)
		return
	}
	var e Explanation
	if node := r.URL.Query().Get("node"); node != "" {
		e, err = h.ExplainFor(key, node)
	} else {
		e, err = h.explainIn(key, nil)
	}
	if err != nil {
		fail(w, http.StatusNotFound, "%v", err)
		return
	}
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, e)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	e.WriteText(w)
}

// Explain builds the explanation of one service, or false when no member
// exports it.
func (h *Handler) Explain(key mcs.ServiceKey) (Explanation, bool) {
	e, err := h.explainIn(key, nil)
	return e, err == nil
}

// explainIn explains the service in the views only accepts (nil: every
// view), with the clients of those views; an error when no member
// exports it.
func (h *Handler) explainIn(key mcs.ServiceKey, only func(view string) bool) (Explanation, error) {
	s := h.state.Snapshot()
	st := s.State.Services.Get(key)
	if st == nil {
		return Explanation{}, errNotExported(key)
	}
	e := Explanation{Service: key.String(), Generation: s.Generation, MCS: serviceView(st), Clients: []ClientResources{}, Members: memberProperties(s.State, st), Profiles: memberProfiles(s.State, st)}
	noServiceHints(&e, s, st)
	names := map[string]bool{}
	if st.Import != nil {
		for _, p := range st.Import.Ports {
			names[translate.HostPort(key, p.Port)] = true
			names[translate.TunnelClusterName(key, p.Port)] = true
		}
	}
	e.Routes = routesNaming(s, key)
	served := map[string][]ResourceSummary{}
	for _, v := range s.Views {
		if only != nil && !only(v.String()) {
			continue // not decoded: a node's explanation reads its view alone
		}
		ve := h.explainView(s, v, st, names)
		if len(ve.Resources) > 0 || len(ve.Invalid) > 0 {
			e.Views = append(e.Views, ve)
			served[ve.View] = ve.Resources
		}
	}
	for _, c := range h.tracker.Clients() {
		if res, ok := served[c.View]; ok {
			e.Clients = append(e.Clients, clientHas(c, res))
		}
	}
	return e, nil
}

func errNotExported(key mcs.ServiceKey) error {
	return fmt.Errorf("no member cluster exports %s: nothing is imported or served for it (see /debug/mcs)", key)
}

// ExplainFor explains the service as the connected client whose node.id
// is node sees it: its view alone, and what it has of it. A client
// served nothing (its node is refused, or not of a member yet) is an
// error with that reason, and so is a node not connected.
func (h *Handler) ExplainFor(key mcs.ServiceKey, node string) (Explanation, error) {
	if h.state.Snapshot().State.Services.Get(key) == nil {
		return Explanation{}, errNotExported(key) // said first, as without --node
	}
	var c *cache.Client
	for _, cl := range h.tracker.Clients() {
		if cl.NodeID == node {
			c = &cl
			break
		}
	}
	if c == nil {
		return Explanation{}, fmt.Errorf("no connected client has node.id %q (see xds status)", node)
	}
	if c.Error != "" || c.View == "" {
		return Explanation{}, fmt.Errorf("node %q is served nothing: %s", node, c.Error)
	}
	e, err := h.explainIn(key, func(view string) bool { return view == c.View })
	if err != nil {
		return e, err
	}
	e.Node, e.NodeView = node, c.View
	clients := []ClientResources{}
	for _, cr := range e.Clients {
		if cr.Node == node {
			clients = append(clients, cr)
		}
	}
	if len(e.Views) == 0 {
		// Its view serves nothing of the service: say so, and why.
		clients = append(clients, ClientResources{Node: c.NodeID, View: c.View, State: string(c.Summary())})
		e.NodeNote = fmt.Sprintf("view %s has nothing of the service (a %s view carries only what its role uses)", c.View, c.Role)
		if imp := e.MCS.Import; imp != nil && !slices.Contains(imp.ImportedIn, mcs.ClusterID(c.Cluster)) {
			ns, _, _ := strings.Cut(e.Service, "/")
			e.NodeNote = fmt.Sprintf("member %s does not import the service: namespace %s does not exist there, and a service is imported only where its namespace exists (KEP-1645)", c.Cluster, ns)
		}
	}
	e.Clients = clients
	return e, nil
}

// memberProperties are the properties of the members that export or
// import a service.
func memberProperties(state *mcs.State, st *mcs.ServiceState) map[mcs.ClusterID]map[string]string {
	out := map[mcs.ClusterID]map[string]string{}
	for _, c := range state.Clusters {
		if c.ID == "" || len(c.Properties) == 0 {
			continue
		}
		in := st.Export(c.ID) != nil || st.Import != nil && slices.Contains(st.Import.ImportedIn, c.ID)
		if in {
			out[c.ID] = c.Properties
		}
	}
	return out
}

// memberProfiles are the ClusterProfiles of the members that export or
// import a service.
func memberProfiles(state *mcs.State, st *mcs.ServiceState) map[mcs.ClusterID]*mcs.ProfileInfo {
	var out map[mcs.ClusterID]*mcs.ProfileInfo
	for _, c := range state.Clusters {
		if c.ID == "" || c.Profile == nil {
			continue
		}
		if st.Export(c.ID) != nil || st.Import != nil && slices.Contains(st.Import.ImportedIn, c.ID) {
			if out == nil {
				out = map[mcs.ClusterID]*mcs.ProfileInfo{}
			}
			out[c.ID] = c.Profile
		}
	}
	return out
}

// noServiceHints adds to an export whose Service is not found why it may
// be: the member's Service was there but rejected (a problem of the
// folder), or the export sits in default while the Service is meant to be
// in another namespace.
func noServiceHints(e *Explanation, s *controlplane.Snapshot, st *mcs.ServiceState) {
	member := map[mcs.ClusterID]string{}
	for _, c := range s.State.Clusters {
		member[c.ID] = c.Member
	}
	for i := range e.MCS.Exports {
		ex := &e.MCS.Exports[i]
		es := st.Export(ex.Cluster)
		if es == nil {
			continue
		}
		c := es.Condition(mcsv1b1.ServiceExportConditionValid)
		if c == nil || c.Reason != string(mcsv1b1.ServiceExportReasonNoService) {
			continue
		}
		rejected := false
		for _, p := range s.Problems {
			if p.Object == "Service "+st.Key.String() && filepath.Base(filepath.Dir(p.File)) == member[ex.Cluster] {
				ex.Messages = append(ex.Messages, fmt.Sprintf("the Service is in %s but was rejected: %s", p.File, p.Err))
				rejected = true
			}
		}
		if !rejected && st.Key.Namespace == metav1.NamespaceDefault {
			ex.Messages = append(ex.Messages, "this export is in namespace default: a ServiceExport must be in its Service's namespace (metadata.namespace)")
		}
	}
}

// routesNaming lists the Gateway API routes that name the service, with
// their parents' conditions.
func routesNaming(s *controlplane.Snapshot, key mcs.ServiceKey) []RouteExplanation {
	var out []RouteExplanation
	for _, m := range slices.Sorted(maps.Keys(s.Gateway)) {
		g := s.Gateway[m]
		for _, st := range g.Statuses {
			if st.Route == nil || !slices.Contains(g.RouteRefs[gatewayapi.RouteKey{Kind: st.Kind, Namespace: st.Namespace, Name: st.Name}], key) {
				continue
			}
			re := RouteExplanation{Member: m, Route: st.Kind + " " + st.Namespace + "/" + st.Name}
			for _, p := range st.Route.Parents {
				line := parentName(p.ParentRef) + ":"
				for _, c := range p.Conditions {
					line += fmt.Sprintf("  %s=%s (%s)", c.Type, c.Status, c.Reason)
					if c.Message != "" && c.Status != metav1.ConditionTrue || c.Type == "PartiallyInvalid" {
						line += ": " + c.Message
					}
				}
				re.Parents = append(re.Parents, line)
			}
			out = append(out, re)
		}
	}
	return out
}

// explainView lists what a view serves of the service (names: its
// host:port names): its clusters, endpoints by locality and the path to
// each (direct, or through which gateways of which network), the members
// left out and why, listeners, routes (and a gateway's routes to it), and
// what failed validation.
func (h *Handler) explainView(s *controlplane.Snapshot, v translate.View, st *mcs.ServiceState, names map[string]bool) ViewExplanation {
	view := v.String()
	ve := ViewExplanation{View: view}
	// Where translate put each member, and why: its own decisions, made
	// again from the served state and view by the same code.
	placed := translate.Placements(st, v)
	for _, typ := range translate.TypeOrder() {
		// Only what may concern the service is decoded: its own names,
		// and route configurations (a gateway's name it among others).
		snap := h.cache.ResourcesWhere(view, typ, func(n string) bool { return names[n] || typ == resourcev3.RouteType })
		for _, p := range snap.Resources {
			rs := ResourceSummary{Type: shortTypeName(typ), Name: p.Name, Version: p.Version, Since: p.Since}
			switch m := p.Message.(type) {
			case *endpointv3.ClusterLoadAssignment:
				if !names[p.Name] {
					continue
				}
				rs.Detail = localities(m, v, s.State, placed[p.Name])
			case *routev3.RouteConfiguration:
				if names[p.Name] {
					rs.Detail = routes(m, nil)
				} else if d := routes(m, names); len(d) > 0 {
					rs.Detail = d // a gateway's routes to this service
				} else {
					continue
				}
			default:
				if !names[p.Name] {
					continue
				}
			}
			ve.Resources = append(ve.Resources, rs)
		}
	}
	for _, inv := range s.Invalid[view] {
		// The view's own Secrets (the tunnel certificate) are every
		// service's concern: a bad one takes the view off the tunnels.
		if names[inv.Name] || inv.Type == resourcev3.SecretType {
			ve.Invalid = append(ve.Invalid, inv.Error())
		}
	}
	return ve
}

// clientHas says which of its view's resources of the service a client
// has acknowledged, lacks, or rejected.
func clientHas(c cache.Client, res []ResourceSummary) ClientResources {
	cr := ClientResources{Node: c.NodeID, View: c.View, State: string(c.Summary())}
	for _, rs := range res {
		ts := c.Types[typeURL(rs.Type)]
		if ts == nil || (len(ts.Names) > 0 && !slices.Contains(ts.Names, rs.Name)) {
			continue // not subscribed: this client does not use it
		}
		cr.Of++
		if acked(ts, rs.Since) {
			cr.Have++
		} else {
			cr.Missing = append(cr.Missing, rs.Type+" "+rs.Name)
		}
		if ts.NackError != "" {
			cr.Nacks = append(cr.Nacks, fmt.Sprintf("%s version %s: %s", rs.Type, ts.Nacked, ts.NackError))
		}
	}
	return cr
}

// localities describes a load assignment's localities: priority, member
// (and zone), weight, endpoints, the path (direct to the pods, or
// through the member's gateways: their addresses, its network), and the
// tier translate placed the member in; then the members translate left
// out of it, and why (placed: translate's placements of the port, nil
// for a tunnel listener's cluster).
func localities(cla *endpointv3.ClusterLoadAssignment, v translate.View, state *mcs.State, placed []translate.Placement) []string {
	var out []string
	// The weight column lines up under the longest locality.
	width := 12
	for _, l := range cla.Endpoints {
		width = max(width, len(localityName(l.Locality)))
	}
	for _, l := range cla.Endpoints {
		healthy, draining := 0, 0
		var via []string
		for _, ep := range l.LbEndpoints {
			if ep.HealthStatus.String() == "DRAINING" {
				draining++
			} else {
				healthy++
			}
			if ep.GetMetadata().GetFilterMetadata()["envoy.transport_socket_match"].GetFields()[translate.TunnelMatch].GetStringValue() != "" {
				if a := ep.GetEndpoint().GetAddress().GetSocketAddress(); a != nil {
					via = append(via, fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPortValue()))
				} else {
					via = append(via, "their host names (cluster "+ep.GetEndpoint().GetAddress().GetEnvoyInternalAddress().GetServerListenerName()+", resolved by Envoy)")
				}
			}
		}
		line := fmt.Sprintf("priority %d  %-*s weight %d  ", l.Priority, width, localityName(l.Locality), l.GetLoadBalancingWeight().GetValue())
		network := networkOf(state, mcs.ClusterID(l.Locality.GetRegion()))
		switch {
		case len(via) > 0:
			// The weight is the member's ready endpoints behind them.
			line += fmt.Sprintf("via %s's gateways %s (network %s, mutual TLS, %s's gateway identity only)", l.Locality.GetRegion(), strings.Join(via, ", "), mcs.NetworkName(network), l.Locality.GetRegion())
		case network != networkOf(state, v.Cluster) && len(l.LbEndpoints) > 0:
			a := l.LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress()
			line += fmt.Sprintf("via this member's gateways at %s:%d, then %s's (network %s)", a.GetAddress(), a.GetPortValue(), l.Locality.GetRegion(), mcs.NetworkName(network))
		default:
			line += fmt.Sprintf("%d healthy, %d draining  direct", healthy, draining)
		}
		for _, pl := range placed {
			if pl.Priority >= 0 && string(pl.Member) == l.Locality.GetRegion() {
				line += "  [" + pl.Tier + "]"
			}
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		out = append(out, "no usable endpoints: requests to this port fail (HTTP 503, gRPC UNAVAILABLE)")
	}
	for _, pl := range placed {
		if pl.Priority < 0 {
			out = append(out, fmt.Sprintf("%s (network %s) left out: %s", pl.Member, mcs.NetworkName(networkOf(state, pl.Member)), pl.Why))
		}
	}
	return out
}

// localityName is a locality as explain prints it: member[/zone] (the
// Kubernetes zone is the sub-zone; the zone is the member again).
func localityName(l *corev3.Locality) string {
	if z := l.GetSubZone(); z != "" {
		return l.GetRegion() + "/" + z
	}
	return l.GetRegion()
}

// networkOf is a member's network ("" for the default one).
func networkOf(state *mcs.State, id mcs.ClusterID) string {
	for _, c := range state.Clusters {
		if c.ID == id {
			return c.Network
		}
	}
	return ""
}

// routes describes where a route configuration sends traffic; with only
// set, just the routes that send to a cluster of those names.
func routes(rc *routev3.RouteConfiguration, only map[string]bool) []string {
	var out []string
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			to, named := routeTarget(r, only)
			if only != nil && !named {
				continue
			}
			out = append(out, fmt.Sprintf("%s %s -> %s", strings.Join(vh.Domains, ","), matchText(r.GetMatch()), to))
		}
	}
	return out
}

// routeTarget says where a route sends requests, and whether it names a
// cluster in names.
func routeTarget(r *routev3.Route, names map[string]bool) (string, bool) {
	switch {
	case r.GetDirectResponse() != nil:
		return fmt.Sprintf("HTTP %d", r.GetDirectResponse().GetStatus()), false
	case r.GetRedirect() != nil:
		return "redirect", false
	}
	a := r.GetRoute()
	if c := a.GetCluster(); c != "" {
		return "cluster " + c, names[c]
	}
	var parts []string
	named := false
	for _, c := range a.GetWeightedClusters().GetClusters() {
		parts = append(parts, fmt.Sprintf("%s (weight %d)", c.Name, c.GetWeight().GetValue()))
		named = named || names[c.Name]
	}
	return "clusters " + strings.Join(parts, ", "), named
}

func matchText(m *routev3.RouteMatch) string {
	var t string
	switch {
	case m.GetPath() != "":
		t = "path " + m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		t = "prefix " + m.GetPathSeparatedPrefix()
	case m.GetSafeRegex() != nil:
		t = "regex " + m.GetSafeRegex().GetRegex()
	default:
		t = "prefix " + m.GetPrefix()
	}
	for _, h := range m.GetHeaders() {
		t += " header " + h.GetName()
	}
	for _, q := range m.GetQueryParameters() {
		t += " query " + q.GetName()
	}
	return t
}

func parentName(p gwapiv1.ParentReference) string {
	kind := "Gateway"
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	n := kind + " " + string(p.Name)
	if p.Namespace != nil {
		n = kind + " " + string(*p.Namespace) + "/" + string(p.Name)
	}
	if p.SectionName != nil {
		n += "/" + string(*p.SectionName)
	}
	return n
}

// shortTypeName is the xDS service of a type URL (CDS, EDS, LDS, RDS,
// SDS), from TypeNames.
func shortTypeName(typ string) string {
	for short, url := range TypeNames {
		if url == typ {
			return strings.ToUpper(short)
		}
	}
	return typ
}

func typeURL(short string) string { return TypeNames[strings.ToLower(short)] }

// WriteText renders the explanation for people.
func (e Explanation) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Service %s (state generation %d)\n", e.Service, e.Generation)
	if e.Node != "" {
		fmt.Fprintf(w, "as node %s (view %s) sees it; without --node, every view\n", e.Node, e.NodeView)
	}
	fmt.Fprintln(w)
	if len(e.Members) > 0 || len(e.Profiles) > 0 {
		fmt.Fprintln(w, "0. Members' properties (About API ClusterProperties, ClusterProfiles)")
		ids := slices.Collect(maps.Keys(e.Members))
		for id := range e.Profiles {
			if _, ok := e.Members[id]; !ok {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		for _, id := range ids {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(e.Members[id])) {
				if k != about.PropertyClusterID {
					kv = append(kv, k+"="+e.Members[id][k])
				}
			}
			line := fmt.Sprintf("   %s  %s", id, strings.Join(kv, ", "))
			if p := e.Profiles[id]; p != nil {
				line += fmt.Sprintf("  (ClusterProfile %s: ControlPlaneHealthy %s", p.Name, p.Status)
				if !p.Healthy() {
					line += ", shown only: the member still serves"
				}
				line += ")"
			}
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "1. Exports, per member cluster")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, x := range e.MCS.Exports {
		fmt.Fprintf(tw, "   %s\t%s\n", x.Cluster, strings.Join(x.Conditions, "  "))
		for _, m := range x.Messages {
			fmt.Fprintf(tw, "   \t%s\n", m)
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	imp := e.MCS.Import
	if imp == nil {
		fmt.Fprintln(w, "2. ServiceImport: none (no valid export), so nothing is served.")
		return
	}
	fmt.Fprintf(w, "2. ServiceImport: %s, exported by %v, imported in %v\n", imp.Type, imp.Clusters, imp.ImportedIn)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range imp.Ports {
		fmt.Fprintf(tw, "   port %s/%s/%d\tserved by %v\n", p.Name, p.Protocol, p.Port, p.Clusters)
	}
	for _, ep := range e.MCS.Endpoints {
		weight := ""
		switch {
		case ep.Weight != nil && *ep.Weight == 0:
			weight = "\tweight 0 (drained)"
		case ep.Weight != nil:
			weight = fmt.Sprintf("\tweight %d", *ep.Weight)
		}
		fmt.Fprintf(tw, "   endpoints in %s\t%d ready, %d draining, %d not ready%s\n", ep.Cluster, ep.Ready, ep.Draining, ep.NotReady, weight)
	}
	_ = tw.Flush()
	if imp.Selection != "" {
		fmt.Fprintf(w, "   cluster selection: %s\n", imp.Selection)
		for _, id := range slices.Sorted(maps.Keys(imp.SelectorResults)) {
			var parts []string
			for i, r := range imp.SelectorResults[id] {
				parts = append(parts, fmt.Sprintf("%d %v", i+1, r.Clusters))
			}
			fmt.Fprintf(w, "     selects for %s: %s\n", id, strings.Join(parts, ", "))
		}
	}
	if len(e.MCS.Conflicts) > 0 {
		fmt.Fprintf(w, "   conflicts: %s (the oldest export wins; see the messages above)\n", strings.Join(e.MCS.Conflicts, ", "))
	}
	fmt.Fprintln(w, "\n3. Envoy resources, per view (member cluster/role)")
	if len(e.Views) == 0 {
		fmt.Fprintln(w, "   none")
		if e.NodeNote != "" {
			fmt.Fprintf(w, "   (%s)\n", e.NodeNote)
		}
	}
	for _, v := range e.Views {
		fmt.Fprintf(w, "   %s\n", v.View)
		width := 0 // the view's longest name: its columns line up
		for _, r := range v.Resources {
			width = max(width, len(r.Name))
		}
		for _, r := range v.Resources {
			fmt.Fprintf(w, "     %-4s %-*s  version %s (since %d)\n", r.Type, width, r.Name, r.Version, r.Since)
			for _, d := range r.Detail {
				fmt.Fprintf(w, "            %s\n", d)
			}
		}
		for _, inv := range v.Invalid {
			fmt.Fprintf(w, "     NOT PUBLISHED (previous version served, if any): %s\n", inv)
		}
	}
	fmt.Fprintln(w, "\n4. Gateway API routes naming the service (status eastwest gives them)")
	if len(e.Routes) == 0 {
		fmt.Fprintln(w, "   none")
	}
	for _, r := range e.Routes {
		fmt.Fprintf(w, "   %s in %s\n", r.Route, r.Member)
		for _, p := range r.Parents {
			fmt.Fprintf(w, "     %s\n", p)
		}
	}
	fmt.Fprintln(w, "\n5. Clients of those views")
	if len(e.Clients) == 0 {
		fmt.Fprintln(w, "   none connected")
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range e.Clients {
		// Gathered from every replica, each client's is the first column.
		lead, under := "   ", "   \t\t\t"
		if c.Replica != "" {
			lead, under = "   "+c.Replica+"\t", "   \t\t\t\t"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\thas %d/%d current\n", lead, c.Node, c.View, c.State, c.Have, c.Of)
		for _, m := range c.Missing {
			fmt.Fprintf(tw, "%snot acked yet: %s\n", under, m)
		}
		for _, n := range c.Nacks {
			fmt.Fprintf(tw, "%sNACK: %s\n", under, n)
		}
	}
	_ = tw.Flush()
}
