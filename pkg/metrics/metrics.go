package metrics

import (
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// Metrics holds eastwest's metrics, registered on one registry.
type Metrics struct {
	Registry *prometheus.Registry

	clients          prometheus.Gauge
	pushes           *prometheus.CounterVec
	pushLatency      *prometheus.HistogramVec
	nacks            *prometheus.CounterVec
	refused          *prometheus.CounterVec
	rejected         *prometheus.GaugeVec
	translate        prometheus.Histogram
	merge            prometheus.Histogram
	publishes        prometheus.Counter
	clusterState     *prometheus.GaugeVec
	gatewayAddrs     *prometheus.GaugeVec
	ignoredGateways  *prometheus.GaugeVec
	exportConditions *prometheus.GaugeVec
	imports          prometheus.Gauge
	sourceProblems   prometheus.Gauge
	connections      *prometheus.GaugeVec
	connFailures     *prometheus.GaugeVec
	gatewayConds     *prometheus.GaugeVec

	// wb are the write-back's readings (zero without a write-back).
	// wbFailures counts the write-back's failed passes per member.
	wbFailures *prometheus.CounterVec
	// profileHealth is each profiled member's ControlPlaneHealthy.
	profileHealth *prometheus.GaugeVec
	wb            struct {
		mu               sync.Mutex
		pending          func() int
		writes           func() int64
		lag              func() time.Duration
		leading, failing func() bool
	}

	// exportSeries are the label values of each service's export
	// condition series, so that replacing them costs what the service
	// has (DeletePartialMatch scans every series: O(services) per
	// service, minutes at start-up with 10,000 services).
	mu           sync.Mutex
	exportSeries map[mcs.ServiceKey][][]string
}

// New creates the metrics on a fresh registry, with the Go and process
// collectors.
func New() *Metrics {
	const ns = "eastwest"
	latencyBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &Metrics{
		exportSeries: map[mcs.ServiceKey][][]string{},
		Registry:     prometheus.NewRegistry(),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "xds_clients",
			Help: "Connected xDS streams."}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_pushes_total",
			Help: "xDS responses sent, by type."}, []string{"type"}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "xds_push_latency_seconds",
			Help: "Time from a cache update to the response that delivers it, by type.", Buckets: latencyBuckets}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_nacks_total",
			Help: "Responses rejected by clients, by type."}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_refused_total",
			Help: "xDS requests refused, ending their stream or call, by reason (unsupported_type, too_many_names, name_too_long, identity, node_changed, secrets_not_allowed)."}, []string{"reason"}),
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "xds_rejected_resources",
			Help: "Resources that failed validation and are not published (the previous version, if any, is served), by type."}, []string{"type"}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "translate_duration_seconds",
			Help: "Time to translate a batch of changed services into Envoy resources and publish them.", Buckets: latencyBuckets}),
		merge: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "merge_duration_seconds",
			Help: "Time to merge a batch of source events into the ClusterSet state.", Buckets: latencyBuckets}),
		publishes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publishes_total",
			Help: "Batches of changes published to the xDS cache."}),
		clusterState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "source_cluster_state",
			Help: "1 for each member cluster's current source state."}, []string{"member", "cluster", "state"}),
		gatewayAddrs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "member_gateway_addresses",
			Help: "East-west gateway addresses of each member, by network; reachable is false when the ClusterSet spans networks and other networks cannot reach the member."},
			[]string{"member", "network", "reachable"}),
		ignoredGateways: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "ignored_gateway_services",
			Help: "Services of each member labelled eastwest.io/east-west-gateway outside its gateway namespace: ignored, since only the operator declares gateways (see /debug/clusters)."},
			[]string{"member"}),
		exportConditions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "serviceexport_status_condition",
			Help: "ServiceExport conditions as the merge computes them (1 per export, condition and status)."},
			[]string{"cluster", "namespace", "service", "condition", "status", "reason"}),
		imports: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "serviceimports",
			Help: "ServiceImports in the ClusterSet."}),
		sourceProblems: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "source_problems",
			Help: "Input documents that cannot be used (see /debug/clusters)."}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "source_connection_state",
			Help: "1 for each Kubernetes member cluster's connection state (connecting, synced, failing, stopped)."}, []string{"member", "state"}),
		connFailures: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "source_connection_failures",
			Help: "Connection failures of each Kubernetes member cluster since it was added."}, []string{"member"}),
		profileHealth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "member_profile_control_plane_healthy",
			Help: "1 for each member from a ClusterProfile, labelled with its ControlPlaneHealthy status (True, False or Unknown): the fleet manager's word, shown and never acted on."}, []string{"member", "status"}),
		wbFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "writeback_member_failures_total",
			Help: "Write-back passes that failed in each member (each is retried alone, after a backoff: see /debug/writeback)."}, []string{"member"}),
		gatewayConds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "gatewayapi_status_conditions",
			Help: "Gateway API status conditions eastwest gives, counted per member, kind, condition, status and reason (route parents and listeners count one each)."},
			[]string{"member", "kind", "condition", "status", "reason"}),
	}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.clients, m.pushes, m.pushLatency, m.nacks, m.refused, m.rejected, m.translate, m.merge, m.publishes,
		m.clusterState, m.gatewayAddrs, m.ignoredGateways, m.exportConditions, m.imports, m.sourceProblems, m.connections, m.connFailures, m.gatewayConds, m.wbFailures, m.profileHealth)
	// Every series whose labels are known in advance exists from the
	// start, at zero: dashboards and alerts see 0, not "no data", on a
	// quiet server.
	for _, typ := range translate.TypeOrder() {
		name := translate.TypeName(typ)
		m.pushes.WithLabelValues(name)
		m.pushLatency.WithLabelValues(name)
		m.nacks.WithLabelValues(name)
		m.rejected.WithLabelValues(name)
	}
	for _, reason := range cache.RefusalReasons {
		m.refused.WithLabelValues(reason)
	}
	// The write-back's metrics exist without a write-back (a YAML folder,
	// --write-back=false) too, at zero.
	m.wb.pending, m.wb.writes, m.wb.leading, m.wb.failing = func() int { return 0 }, func() int64 { return 0 }, func() bool { return false }, func() bool { return false }
	m.wb.lag = func() time.Duration { return 0 }
	b := func(f func() bool) float64 {
		if f() {
			return 1
		}
		return 0
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "eastwest", Name: "writeback_pending_services",
			Help: "Services whose MCS objects the write-back has still to write (queued or in the running pass; every service while a member's failed pass waits for its retry)."},
			func() float64 { m.wb.mu.Lock(); defer m.wb.mu.Unlock(); return float64(m.wb.pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "eastwest", Name: "writeback_lag_seconds",
			Help: "How long the oldest change not yet written to every member has waited (0: caught up)."},
			func() float64 { m.wb.mu.Lock(); defer m.wb.mu.Unlock(); return m.wb.lag().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "eastwest", Name: "writeback_writes_total",
			Help: "Creates, updates and deletes the write-back made in member clusters, Gateway API status updates included."},
			func() float64 { m.wb.mu.Lock(); defer m.wb.mu.Unlock(); return float64(m.wb.writes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "eastwest", Name: "writeback_leader",
			Help: "1 when this replica leads the write-back (writes MCS objects to the member clusters)."},
			func() float64 { m.wb.mu.Lock(); defer m.wb.mu.Unlock(); return b(m.wb.leading) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "eastwest", Name: "leader_election_failing",
			Help: "1 while this replica cannot read or write the write-back's Lease (see /debug/writeback)."},
			func() float64 { m.wb.mu.Lock(); defer m.wb.mu.Unlock(); return b(m.wb.failing) }))
	return m
}

// WriteBack reports the write-back's progress in its metrics: the services
// whose objects are not written yet, and the writes made.
func (m *Metrics) WriteBack(pending func() int, writes func() int64, lag func() time.Duration) {
	m.wb.mu.Lock()
	defer m.wb.mu.Unlock()
	m.wb.pending, m.wb.writes, m.wb.lag = pending, writes, lag
}

// WriteBackMemberFailed counts a member's failed write-back pass.
func (m *Metrics) WriteBackMemberFailed(member string) { m.wbFailures.WithLabelValues(member).Inc() }

// Election reports the write-back's leadership in its metrics: whether
// this replica leads (writes to the members), and whether its Lease cannot
// be used.
func (m *Metrics) Election(leading, failing func() bool) {
	m.wb.mu.Lock()
	defer m.wb.mu.Unlock()
	m.wb.leading, m.wb.failing = leading, failing
}

// Pushed counts a response and its latency when known.
func (m *Metrics) Pushed(typ string, latency time.Duration, known bool) {
	t := translate.TypeName(typ)
	m.pushes.WithLabelValues(t).Inc()
	if known {
		m.pushLatency.WithLabelValues(t).Observe(latency.Seconds())
	}
}

// Nacked counts a NACK.
func (m *Metrics) Nacked(typ string) { m.nacks.WithLabelValues(translate.TypeName(typ)).Inc() }

// Refused counts a refused xDS request.
func (m *Metrics) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// Clients sets the number of connected streams.
func (m *Metrics) Clients(n int) { m.clients.Set(float64(n)) }

// Rejected sets the number of resources of a type that failed validation.
func (m *Metrics) Rejected(typ string, n int) {
	m.rejected.WithLabelValues(translate.TypeName(typ)).Set(float64(n))
}

// Merged observes a merge.
func (m *Metrics) Merged(d time.Duration) { m.merge.Observe(d.Seconds()) }

// Translated observes a translation and publish.
func (m *Metrics) Translated(d time.Duration) {
	m.translate.Observe(d.Seconds())
	m.publishes.Inc()
}

// GatewayStatuses sets the counts of a member's Gateway API conditions
// (listeners under kind "Listener").
func (m *Metrics) GatewayStatuses(member string, statuses []gatewayapi.Status) {
	m.gatewayConds.DeletePartialMatch(prometheus.Labels{"member": member})
	count := func(kind string, cs []metav1.Condition) {
		for _, c := range cs {
			m.gatewayConds.WithLabelValues(member, kind, c.Type, string(c.Status), c.Reason).Inc()
		}
	}
	for _, st := range statuses {
		switch {
		case st.GatewayClass != nil:
			count(st.Kind, st.GatewayClass.Conditions)
		case st.Gateway != nil:
			count(st.Kind, st.Gateway.Conditions)
			for _, l := range st.Gateway.Listeners {
				count("Listener", l.Conditions)
			}
		case st.Route != nil:
			for _, p := range st.Route.Parents {
				count(st.Kind, p.Conditions)
			}
		case st.Parameters != nil:
			count(st.Kind, st.Parameters.Conditions)
		}
	}
}

// BuildInfo registers eastwest_build_info: 1, labelled with the running
// binary's version and source revision and its Go toolchain, as
// Prometheus's own build_info metrics are (join on it to see which
// replica runs which build). Call it once.
func (m *Metrics) BuildInfo(version, revision string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "eastwest", Name: "build_info",
		Help:        "1, labelled with the version, source revision and Go toolchain of the running xds.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()}})
	g.Set(1)
	m.Registry.MustRegister(g)
}

// SourceProblems sets the number of unusable input documents.
func (m *Metrics) SourceProblems(n int) { m.sourceProblems.Set(float64(n)) }

// Clusters sets every member's state ("synced" when it takes part in the
// merge, "left-out" when it does not) and its east-west gateway addresses.
func (m *Metrics) Clusters(clusters []mcs.ClusterInfo) {
	m.clusterState.Reset()
	for _, c := range clusters {
		state := "synced"
		if c.Error != "" {
			state = "left-out"
		}
		m.clusterState.WithLabelValues(c.Member, string(c.ID), state).Set(1)
	}
	m.gatewayAddrs.Reset()
	for _, c := range clusters {
		if c.ID != "" {
			m.gatewayAddrs.WithLabelValues(c.Member, mcs.NetworkName(c.Network), strconv.FormatBool(c.GatewayError == "")).Set(float64(len(c.Gateways)))
		}
	}
	m.ignoredGateways.Reset()
	for _, c := range clusters {
		m.ignoredGateways.WithLabelValues(c.Member).Set(float64(len(c.IgnoredGateways)))
	}
	m.profileHealth.Reset()
	for _, c := range clusters {
		if c.Profile != nil {
			m.profileHealth.WithLabelValues(c.Member, c.Profile.Status).Set(1)
		}
	}
}

// Connection is one Kubernetes member's connection state.
type Connection struct {
	Member, State string
	Failures      int
}

// Connections sets every Kubernetes member's connection state.
func (m *Metrics) Connections(cs []Connection) {
	m.connections.Reset()
	m.connFailures.Reset()
	for _, c := range cs {
		m.connections.WithLabelValues(c.Member, c.State).Set(1)
		m.connFailures.WithLabelValues(c.Member).Set(float64(c.Failures))
	}
}

// Service replaces one service's export condition series and recounts
// imports by the change (+1, 0 or -1).
func (m *Metrics) Service(key mcs.ServiceKey, st *mcs.ServiceState, importDelta int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, lv := range m.exportSeries[key] {
		m.exportConditions.DeleteLabelValues(lv...)
	}
	var series [][]string
	if st != nil {
		for _, e := range st.Exports {
			for _, c := range e.Conditions {
				lv := []string{string(e.Cluster), key.Namespace, key.Name, c.Type, string(c.Status), c.Reason}
				m.exportConditions.WithLabelValues(lv...).Set(1)
				series = append(series, lv)
			}
		}
	}
	if series == nil {
		delete(m.exportSeries, key)
	} else {
		m.exportSeries[key] = series
	}
	m.imports.Add(float64(importDelta))
}

// clientStates is eastwest_xds_clients_by_state: the connected clients
// by role and sync state, counted when Prometheus scrapes.
type clientStates struct {
	desc    *prometheus.Desc
	clients func() []cache.Client
}

// clientRoles and clientSummaries are the series that always exist.
var (
	clientRoles     = []string{"client", "gateway", "gateway-api"}
	clientSummaries = []cache.SyncState{cache.Synced, cache.Stale, cache.Nacked, cache.Waiting, cache.UnservedState}
)

func (c clientStates) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c clientStates) Collect(ch chan<- prometheus.Metric) {
	type key struct {
		role  string
		state cache.SyncState
	}
	counts := map[key]int{}
	for _, r := range clientRoles {
		for _, s := range clientSummaries {
			counts[key{r, s}] = 0
		}
	}
	for _, cl := range c.clients() {
		// The role is what a client claims: an unknown one is counted as
		// "other", so that no client can make new series.
		role := cl.Role
		if !slices.Contains(clientRoles, role) {
			role = "other"
		}
		counts[key{role, cl.Summary()}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.role, string(k.state))
	}
}

// ClientStates registers eastwest_xds_clients_by_state, read from
// clients (the Tracker's) at each scrape.
func (m *Metrics) ClientStates(clients func() []cache.Client) {
	m.Registry.MustRegister(clientStates{
		desc: prometheus.NewDesc("eastwest_xds_clients_by_state",
			"Connected xDS clients by role (client, gateway, gateway-api; other for a role eastwest does not know) and sync state (SYNCED, STALE, NACKED, WAITING; UNSERVED: connected but served nothing, its cluster not a member or its Gateway not programmed).", []string{"role", "state"}, nil),
		clients: clients,
	})
}

// Names returns the name of every metric family eastwest exports,
// including the vectors whose series appear only with members, Gateways
// or networks: what dashboards and alert rules may read.
func Names() map[string]bool {
	m := New()
	m.ClientStates(func() []cache.Client { return nil })
	out := map[string]bool{}
	if families, err := m.Registry.Gather(); err == nil {
		for _, f := range families {
			out[f.GetName()] = true
		}
	}
	for _, c := range []prometheus.Collector{m.clusterState, m.gatewayAddrs, m.ignoredGateways, m.exportConditions, m.connections, m.connFailures, m.gatewayConds} {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if n := descName.FindStringSubmatch(d.String()); n != nil {
				out[n[1]] = true
			}
		}
	}
	return out
}

// descName reads a Desc's name from its String (the only way the client
// library shows it).
var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// NamesIn returns the eastwest_ metric families a PromQL expression reads
// (a histogram's _bucket, _sum and _count read its family).
func NamesIn(expr string) []string {
	var out []string
	for _, n := range metricName.FindAllString(expr, -1) {
		n = histogramSuffix.ReplaceAllString(n, "")
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

var (
	metricName      = regexp.MustCompile(`\beastwest_[a-z_]+`) // not envoy_eastwest_ (pkg/envoystats)
	histogramSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)
)
