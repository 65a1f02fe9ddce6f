package grafana

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/eastwest-dev/eastwest/pkg/envoystats"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
)

// Every query of the dashboard reads metrics eastwest exports (or the
// Envoys' traffic series it configures), and every panel has one.
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
	have := metrics.Names()
	// The Envoys' cross-cluster traffic series, which eastwest configures
	// (pkg/envoystats).
	for _, n := range envoystats.Names() {
		have[n] = true
	}
	if len(dash.Panels) < 8 {
		t.Fatalf("%d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			names := append(metrics.NamesIn(q.Expr), envoystats.NamesIn(q.Expr)...)
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
