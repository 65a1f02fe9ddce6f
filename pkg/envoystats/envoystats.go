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
// Cardinality is bounded by configuration: per Envoy, the service ports
// it is served times their exporting members.
package envoystats

import (
	"regexp"
	"slices"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
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
)

// Names are the series above.
func Names() []string { return []string{Requests, RequestsByClass, Completed, Latency} }

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
	seriesName      = regexp.MustCompile(`envoy_cluster_zone_[a-z_]+`)
	histogramSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)
)
