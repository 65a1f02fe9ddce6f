// Package envoystats is the cross-cluster traffic stats eastwest's Envoys
// keep: the tags their bootstraps extract from the stat names and the
// Prometheus series that result, which the dashboard reads. It depends on
// nothing of eastwest's (the bootstraps' generator, pkg/provision, is a
// leaf too).
//
// How the stats come about: translate puts every upstream member in its
// locality's zone and names each service port's Envoy cluster for stats
// <namespace>/<service>/<port> (alt_stat_name, no dots); an Envoy run with
// --service-zone <its member> then has its router count, per cluster,
// cluster.<ns>/<svc>/<port>.zone.<source member>.<destination member>.upstream_rq_<code>
// (and _<class>xx, _completed, and the upstream_rq_time histogram). The
// tags below turn the members into Prometheus labels:
//
//	envoy_cluster_zone_upstream_rq{envoy_cluster_name="shop/cart/80",source_member="use1",destination_member="use2",envoy_response_code="200"}
//
// Bytes have no such per-zone stat in Envoy. Every listener of a gateway
// or a Gateway that sends to other members (not the tunnel listener,
// whose traffic arrives from elsewhere) logs each request or TCP
// connection, when it ends, to Envoy's stats access logger (TrafficLog):
// its body bytes each way, tagged with the cluster's stat name, the
// Envoy's member (set by the control plane) and the upstream locality's
// zone (the destination member):
//
//	envoy_eastwest_traffic_request_bytes{envoy_cluster_name="shop/cart/80",source_member="use1",destination_member="euw1"}
//
// Cardinality is bounded by configuration: per Envoy, the service ports
// it is served times their exporting members; and the logger's scope
// holds at most MaxTrafficCounters counters.
package envoystats

import (
	"regexp"
	"slices"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	statsaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stats/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The labels of the cross-cluster series.
const (
	TagSource      = "source_member"
	TagDestination = "destination_member"
)

// The regexes of the tags: the first group is what the tag removes from
// the name, the second the tag's value. Member IDs and the clusters'
// stat names hold no dots.
const (
	sourceRegex      = `^cluster\.[^.]+\.zone\.(([^.]+)\.)[^.]+\.`
	destinationRegex = `^cluster\.[^.]+\.zone\.[^.]+\.(([^.]+)\.)`
)

// Tags are the bootstrap's stats_config.stats_tags.
func Tags() []*metricsv3.TagSpecifier {
	return []*metricsv3.TagSpecifier{
		{TagName: TagSource, TagValue: &metricsv3.TagSpecifier_Regex{Regex: sourceRegex}},
		{TagName: TagDestination, TagValue: &metricsv3.TagSpecifier_Regex{Regex: destinationRegex}},
	}
}

// The Prometheus series of the cross-cluster traffic (an Envoy's
// /stats/prometheus).
const (
	// Requests counts requests by response code.
	Requests = "envoy_cluster_zone_upstream_rq"
	// RequestsByClass counts them by class (envoy_response_code_class).
	RequestsByClass = "envoy_cluster_zone_upstream_rq_xx"
	// Completed counts completed requests.
	Completed = "envoy_cluster_zone_upstream_rq_completed"
	// Latency is the request time histogram (milliseconds).
	Latency = "envoy_cluster_zone_upstream_rq_time"
	// RequestBytes counts the bytes clients sent to the destination member
	// (HTTP request bodies; a TCP connection's bytes from its client).
	RequestBytes = "envoy_eastwest_traffic_request_bytes"
	// ResponseBytes counts the bytes sent back to the clients (response
	// bodies; a TCP connection's bytes to its client).
	ResponseBytes = "envoy_eastwest_traffic_response_bytes"
)

// Names are the series above.
func Names() []string {
	return []string{Requests, RequestsByClass, Completed, Latency, RequestBytes, ResponseBytes}
}

// TagService is the bytes series' label naming the service port, as the
// request series name it (the cluster's alt_stat_name).
const TagService = "envoy_cluster_name"

// MaxTrafficCounters bounds the counters TrafficLog may make in one
// Envoy (Envoy drops the stats of a full scope): two per service port
// and destination member.
const MaxTrafficCounters = 65536

// TrafficLog is the stats access logger's config of a listener of an
// Envoy in member source: the bytes series above.
func TrafficLog(source string) *statsaccesslogv3.Config {
	tags := []*statsaccesslogv3.Config_Tag{
		{Name: TagService, ValueFormat: "%UPSTREAM_CLUSTER%"},
		{Name: TagSource, ValueFormat: source},
		{Name: TagDestination, ValueFormat: "%CEL(upstream.locality.zone)%"},
	}
	counter := func(name, value string) *statsaccesslogv3.Config_Counter {
		return &statsaccesslogv3.Config_Counter{Stat: &statsaccesslogv3.Config_Stat{Name: name, Tags: tags}, ValueFormat: value}
	}
	return &statsaccesslogv3.Config{
		StatsScope: &typev3.Scope{Prefix: "eastwest_traffic", MaxCounters: wrapperspb.UInt32(MaxTrafficCounters)},
		Counters: []*statsaccesslogv3.Config_Counter{
			counter("request_bytes", "%BYTES_RECEIVED%"),
			counter("response_bytes", "%BYTES_SENT%"),
		},
	}
}

// NamesIn returns the traffic series a PromQL expression reads (a
// histogram's _bucket, _sum and _count as the histogram).
func NamesIn(expr string) []string {
	var out []string
	for _, n := range seriesName.FindAllString(expr, -1) {
		n = histogramSuffix.ReplaceAllString(n, "")
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

var (
	seriesName      = regexp.MustCompile(`envoy_(cluster_zone|eastwest_traffic)_[a-z_]+`)
	histogramSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)
)
