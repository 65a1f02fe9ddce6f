package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/cache"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
)

// exported are the metric families eastwest's registry has: every metric
// created at start, and those registered with the write-back and tracker.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New()
	m.ClientStates(func() []cache.Client { return nil })
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range families {
		out[f.GetName()] = true
	}
	// Vectors whose series need a member or a Gateway to exist.
	for _, name := range []string{"eastwest_source_cluster_state", "eastwest_source_connection_state", "eastwest_source_connection_failures",
		"eastwest_member_gateway_addresses", "eastwest_serviceexport_status_condition", "eastwest_gatewayapi_status_conditions"} {
		out[name] = true
	}
	return out
}

// metricNames are the eastwest_ names a PromQL expression reads (a
// histogram's _bucket, _sum and _count read its family).
func metricNames(expr string) []string {
	var out []string
	for _, n := range regexp.MustCompile(`eastwest_[a-z_]+`).FindAllString(expr, -1) {
		n = regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(n, "")
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Every query of the dashboard reads metrics eastwest exports, and every
// panel has one.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("eastwest.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	have := exported(t)
	if len(dash.Panels) < 8 {
		t.Fatalf("%d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			names := metricNames(q.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: %q reads no eastwest metric", p.Title, q.Expr)
			}
			for _, n := range names {
				if !have[n] {
					t.Errorf("panel %q reads %s, which eastwest does not export", p.Title, n)
				}
			}
		}
	}
}
