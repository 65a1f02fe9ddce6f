package debug

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// State is what the handlers read.
type State interface {
	Snapshot() *controlplane.Snapshot
	Ready() bool
	// Waiting names the sources whose initial state has not arrived.
	Waiting() []string
	// Healthy fails when the control plane is stuck (/healthz).
	Healthy() error
}

// Handler serves the debug endpoints.
type Handler struct {
	members   func() []source.ClusterStatus
	writeBack func() controlplane.WriteBackStatus
	state     State
	cache     *cache.Cache
	tracker   *cache.Tracker
	mux       *http.ServeMux
}

// New returns the debug endpoints' handler.
func New(s State, c *cache.Cache, t *cache.Tracker, m *metrics.Metrics) *Handler {
	h := &Handler{state: s, cache: c, tracker: t, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /debug/clusters", h.clusters)
	h.mux.HandleFunc("GET /debug/mcs", h.mcs)
	h.mux.HandleFunc("GET /debug/syncz", h.syncz)
	h.mux.HandleFunc("GET /debug/refused", h.refused)
	h.mux.HandleFunc("GET /debug/config_dump", h.configDump)
	h.mux.HandleFunc("GET /debug/explain", h.explain)
	h.mux.HandleFunc("GET /debug/gateways", h.gateways)
	h.mux.HandleFunc("GET /debug/writeback", h.writeback)
	h.mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	// Go's profiles (heap, CPU, goroutines): stacks and sizes, never
	// the data the program holds; the endpoint is on loopback or behind
	// TLS like the rest.
	h.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	h.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	h.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	h.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	h.mux.HandleFunc("GET /{$}", h.index)
	return h
}

// ForApp is the debug endpoint of a control plane App.
func ForApp(a *controlplane.App) http.Handler {
	h := New(a.Writer, a.Cache, a.Tracker, a.Metrics)
	h.members = a.MemberStatuses
	h.writeBack = a.WriteBack
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) index(w http.ResponseWriter, _ *http.Request) {
	_, _ = fmt.Fprint(w, `eastwest debug endpoint
  /debug/explain?service=NS/NAME   why traffic for a service goes where it goes [&node=ID: for one client]
  /debug/syncz                     every xDS client: sent, acked, nacked per type
  /debug/refused                   the latest xDS requests refused (identity, limits, types), with the reason
  /debug/config_dump?node=ID       what a client is served [&type=cds|eds|lds|rds|sds] (keys redacted)
  /debug/mcs[?service=NS/NAME]     ServiceImports, exports, conditions, conflicts
  /debug/gateways                  Gateway API statuses eastwest owns, gateway-api views
  /debug/clusters                  member clusters and their sources
  /debug/writeback                 the write-back: leadership, its Lease, pending services, writes
  /debug/pprof/                    Go profiles (heap, cpu, goroutine) for performance reports
  /metrics /healthz /readyz
`)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	http.Error(w, fmt.Sprintf(format, args...), code)
}

// healthz is the liveness probe: it fails when the writer owes a publish
// for too long, so that Kubernetes restarts a stuck control plane.
func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	if err := h.state.Healthy(); err != nil {
		fail(w, http.StatusServiceUnavailable, "unhealthy: %v", err)
		return
	}
	_, _ = fmt.Fprintln(w, "ok")
}

// writeback is /debug/writeback: leadership, pending services, writes.
func (h *Handler) writeback(w http.ResponseWriter, _ *http.Request) {
	var st controlplane.WriteBackStatus
	if h.writeBack != nil {
		st = h.writeBack()
	}
	writeJSON(w, st)
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if h.writeBack != nil {
		if p := h.writeBack().Problem; p != "" {
			fail(w, http.StatusServiceUnavailable, "not ready: %s", p)
			return
		}
	}
	if !h.state.Ready() {
		// The live list: the snapshot's is empty before the first publish.
		if waiting := h.state.Waiting(); len(waiting) > 0 {
			fail(w, http.StatusServiceUnavailable, "not ready: waiting for the initial sync of %s", strings.Join(waiting, ", "))
			return
		}
		fail(w, http.StatusServiceUnavailable, "not ready: every source synced, the first publish is under way")
		return
	}
	_, _ = fmt.Fprintln(w, "ok")
}

// ClustersView is /debug/clusters.
type ClustersView struct {
	Members []mcs.ClusterInfo `json:"members"`
	// Connections are the Kubernetes members' connection states.
	Connections []source.ClusterStatus `json:"connections,omitempty"`
	Sources     map[string]bool        `json:"sources"`
	Problems    []string               `json:"problems"`
}

func (h *Handler) clusters(w http.ResponseWriter, _ *http.Request) {
	s := h.state.Snapshot()
	v := ClustersView{Members: s.State.Clusters, Sources: s.Sources, Problems: []string{}}
	if h.members != nil {
		v.Connections = h.members()
	}
	for _, p := range s.Problems {
		v.Problems = append(v.Problems, p.String())
	}
	writeJSON(w, v)
}

// ServiceView is one service in /debug/mcs.
type ServiceView struct {
	Service   string          `json:"service"`
	Import    *ImportView     `json:"import,omitempty"`
	Exports   []ExportView    `json:"exports"`
	Conflicts []string        `json:"conflicts,omitempty"`
	Endpoints []EndpointsView `json:"endpoints,omitempty"`
}

// ImportView is a service's merged ServiceImport.
type ImportView struct {
	Type       string            `json:"type"`
	Ports      []PortView        `json:"ports"`
	Clusters   []mcs.ClusterID   `json:"clusters"`
	ImportedIn []mcs.ClusterID   `json:"importedIn"`
	Labels     map[string]string `json:"labels,omitempty"`
	Annotation map[string]string `json:"annotations,omitempty"`
	// Selection is the service's cluster selection (KEP-5939), briefly;
	// SelectorResults what each selector matches for each importer.
	Selection       string                                 `json:"selection,omitempty"`
	SelectorResults map[mcs.ClusterID][]mcs.SelectorResult `json:"selectorResults,omitempty"`
}

// PortView is one import port and the clusters that serve it.
type PortView struct {
	Name        string          `json:"name,omitempty"`
	Protocol    string          `json:"protocol"`
	Port        int32           `json:"port"`
	AppProtocol string          `json:"appProtocol,omitempty"`
	Clusters    []mcs.ClusterID `json:"clusters"`
	// RelayPort is where the east-west gateways take this port's
	// connections from their own member's pods without a proxy
	// (docs/networks.md); RelayError why a TCP port has none.
	RelayPort  int32  `json:"relayPort,omitempty"`
	RelayError string `json:"relayError,omitempty"`
}

// ExportView is one cluster's ServiceExport status.
type ExportView struct {
	Cluster    mcs.ClusterID `json:"cluster"`
	Conditions []string      `json:"conditions"`
	Messages   []string      `json:"messages,omitempty"`
}

// EndpointsView counts one exporting cluster's endpoints.
type EndpointsView struct {
	Cluster     mcs.ClusterID `json:"cluster"`
	Ready       int           `json:"ready"`
	Draining    int           `json:"draining"`
	NotReady    int           `json:"notReady"`
	SliceCount  int           `json:"slices"`
	AddressType []string      `json:"addressTypes"`
	// Loops are endpoint addresses left out because they are the
	// member's east-west gateways (traffic to them would loop).
	Loops []string `json:"loops,omitempty"`
	// Weight is the member's weight when the service declares weights
	// (eastwest.io/weight; 0 is drained).
	Weight *int32 `json:"weight,omitempty"`
}

func serviceView(st *mcs.ServiceState) ServiceView {
	v := ServiceView{Service: st.Key.String(), Exports: []ExportView{}}
	if imp := st.Import; imp != nil {
		iv := &ImportView{Type: string(imp.Type), Clusters: imp.Clusters, ImportedIn: imp.ImportedIn, Labels: imp.Labels, Annotation: imp.Annotations,
			SelectorResults: imp.SelectorResults}
		if imp.Selection != nil {
			iv.Selection = imp.Selection.Summary()
		}
		for _, p := range imp.Ports {
			pv := PortView{Name: p.Name, Protocol: string(p.Protocol), Port: p.Port, Clusters: p.Clusters, RelayPort: p.RelayPort, RelayError: p.RelayError}
			if p.AppProtocol != nil {
				pv.AppProtocol = *p.AppProtocol
			}
			iv.Ports = append(iv.Ports, pv)
		}
		v.Import = iv
	}
	for _, e := range st.Exports {
		ev := ExportView{Cluster: e.Cluster}
		for _, c := range e.Conditions {
			ev.Conditions = append(ev.Conditions, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Reason))
			if c.Type == "Conflict" && c.Status == "True" {
				ev.Messages = append(ev.Messages, c.Message)
				for _, r := range strings.Split(c.Reason, ",") {
					if !slices.Contains(v.Conflicts, r) {
						v.Conflicts = append(v.Conflicts, r)
					}
				}
			}
			if c.Status == "False" && c.Type != "Conflict" {
				ev.Messages = append(ev.Messages, c.Message)
			}
		}
		v.Exports = append(v.Exports, ev)
	}
	for _, b := range st.Backends {
		ep := EndpointsView{Cluster: b.Cluster, SliceCount: len(b.Slices), Loops: b.Loops}
		if st.Weighted() {
			w := b.WeightOf()
			ep.Weight = &w
		}
		for _, s := range b.Slices {
			if !slices.Contains(ep.AddressType, string(s.AddressType)) {
				ep.AddressType = append(ep.AddressType, string(s.AddressType))
			}
			for e := range s.All() {
				switch {
				case e.Ready:
					ep.Ready++
				case e.Serving && e.Terminating:
					ep.Draining++
				default:
					ep.NotReady++
				}
			}
		}
		v.Endpoints = append(v.Endpoints, ep)
	}
	return v
}

func parseService(s string) (mcs.ServiceKey, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return mcs.ServiceKey{}, fmt.Errorf("service must be NAMESPACE/NAME, not %q", s)
	}
	return mcs.ServiceKey{Namespace: ns, Name: name}, nil
}

func (h *Handler) mcs(w http.ResponseWriter, r *http.Request) {
	s := h.state.Snapshot()
	var keys []mcs.ServiceKey
	if q := r.URL.Query().Get("service"); q != "" {
		key, err := parseService(q)
		if err != nil {
			fail(w, http.StatusBadRequest, "%v", err)
			return
		}
		if s.State.Services.Get(key) == nil {
			fail(w, http.StatusNotFound, "no member cluster exports %s", key)
			return
		}
		keys = []mcs.ServiceKey{key}
	} else {
		keys = s.State.ServiceKeys()
	}
	out := make([]ServiceView, 0, len(keys))
	for _, k := range keys {
		out = append(out, serviceView(s.State.Services.Get(k)))
	}
	writeJSON(w, map[string]any{"generation": s.Generation, "services": out})
}

// ClientView is one client in /debug/syncz.
type ClientView struct {
	cache.Client
	// Summary is the worst state across types.
	Summary cache.SyncState `json:"summary"`
}

// TypeNames maps the short names used by the CLI and endpoints to type URLs.
var TypeNames = map[string]string{
	"cds": resourcev3.ClusterType,
	"eds": resourcev3.EndpointType,
	"lds": resourcev3.ListenerType,
	"rds": resourcev3.RouteType,
	"sds": resourcev3.SecretType,
}

// SynczLimit is how many streams /debug/syncz lists by default
// (?limit= and ?offset= page through more; X-Total-Count has them all).
// Each stream is listed with the count of the names it subscribes to,
// not the names: 100,000 names a stream made the page take seconds.
const SynczLimit = 1000

func (h *Handler) syncz(w http.ResponseWriter, r *http.Request) {
	clients := h.tracker.Summaries()
	limit, offset := SynczLimit, 0
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v >= 0 {
		limit = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("offset")); err == nil && v >= 0 {
		offset = v
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(clients)))
	start := min(offset, len(clients))
	page := clients[start : start+min(limit, len(clients)-start)]
	out := make([]ClientView, 0, len(page))
	for _, c := range page {
		out = append(out, ClientView{Client: c, Summary: c.Summary()})
	}
	writeJSON(w, out)
}

// refused lists the most recently refused xDS requests, oldest first.
func (h *Handler) refused(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, h.tracker.Refusals())
}

// summarize is a client's worst state: NACKED, then STALE, then WAITING.
func (h *Handler) findClient(node string) (cache.Client, bool) {
	for _, c := range h.tracker.Clients() {
		if c.NodeID == node {
			return c, true
		}
	}
	return cache.Client{}, false
}

func (h *Handler) configDump(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if node == "" {
		fail(w, http.StatusBadRequest, "node=ID is required (see /debug/syncz for connected nodes)")
		return
	}
	c, ok := h.findClient(node)
	if !ok {
		fail(w, http.StatusNotFound, "no connected client has node.id %q", node)
		return
	}
	if c.Error != "" {
		fail(w, http.StatusConflict, "node %q is served nothing: %s", node, c.Error)
		return
	}
	types := translate.TypeOrder()
	if t := r.URL.Query().Get("type"); t != "" {
		url, ok := TypeNames[strings.ToLower(t)]
		if !ok {
			fail(w, http.StatusBadRequest, "type must be one of cds, eds, lds, rds, sds")
			return
		}
		types = []string{url}
	}
	dump := ConfigDump{Node: c.NodeID, View: c.View}
	for _, typ := range types {
		ts := c.Types[typ]
		if ts == nil {
			continue
		}
		snap := h.cache.Resources(c.View, typ)
		td := TypeDump{Type: typ, State: ts.State, Version: snap.Version, Sent: ts.Sent, Acked: ts.Acked, Nacked: ts.Nacked, NackError: ts.NackError, Resources: []json.RawMessage{}}
		for _, p := range snap.Resources {
			if len(ts.Names) > 0 && !slices.Contains(ts.Names, p.Name) {
				continue
			}
			// Secrets show a hash of their key material, never the key.
			a, err := anypb.New(translate.Redact(p.Message))
			if err != nil {
				continue
			}
			js, err := protojson.Marshal(a)
			if err != nil {
				continue
			}
			td.Resources = append(td.Resources, js)
		}
		dump.Types = append(dump.Types, td)
	}
	writeJSON(w, dump)
}

// ConfigDump is /debug/config_dump: what one client is served, per type.
type ConfigDump struct {
	Node  string     `json:"node"`
	View  string     `json:"view"`
	Types []TypeDump `json:"types"`
}

// TypeDump is one type of a ConfigDump.
type TypeDump struct {
	Type      string            `json:"type"`
	State     cache.SyncState   `json:"state"`
	Version   string            `json:"version"`
	Sent      string            `json:"sent,omitempty"`
	Acked     string            `json:"acked,omitempty"`
	Nacked    string            `json:"nacked,omitempty"`
	NackError string            `json:"nackError,omitempty"`
	Resources []json.RawMessage `json:"resources"`
}

func acked(ts *cache.TypeSync, since uint64) bool {
	if ts == nil || ts.Acked == "" {
		return false
	}
	v, err := strconv.ParseUint(ts.Acked, 10, 64)
	return err == nil && v >= since
}

// GatewayStatus is one object's Gateway API status in /debug/gateways.
type GatewayStatus struct {
	Member string `json:"member"`
	gatewayapi.Status
}

// gateways is /debug/gateways: every status eastwest computes for the
// GatewayClasses, Gateways and routes it owns, per member cluster, and
// the gateway-api views it serves (what Envoys can declare).
func (h *Handler) gateways(w http.ResponseWriter, _ *http.Request) {
	s := h.state.Snapshot()
	out := struct {
		Views    []string        `json:"views"`
		Statuses []GatewayStatus `json:"statuses"`
	}{Views: []string{}, Statuses: []GatewayStatus{}}
	for _, v := range s.Views {
		if v.Role == translate.RoleGatewayAPI {
			out.Views = append(out.Views, v.String())
		}
	}
	for _, m := range slices.Sorted(maps.Keys(s.Gateway)) {
		for _, st := range s.Gateway[m].Statuses {
			out.Statuses = append(out.Statuses, GatewayStatus{Member: m, Status: st})
		}
	}
	writeJSON(w, out)
}
