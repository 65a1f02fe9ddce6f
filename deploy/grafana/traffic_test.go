package grafana

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/testkit"
)

// The cross-cluster panels compute what they say, evaluated by Prometheus
// (promtool test rules) over the series an Envoy exports: use1 sends 1
// request/s to itself and 3 to use2, usw1 1/s to use2 only, use2 1/s to
// itself; the matrix holds each pair, and the share leaving each member
// is 3/4, 1 and 0 (a member that sends nothing to itself counts as all
// leaving, not as missing); use1 sends use2 110 bytes/s over two services
// and gets 100 back.
func TestCrossClusterPanelsCompute(t *testing.T) {
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
	exprs := map[string]string{}
	for _, p := range dash.Panels {
		switch p.Title {
		case "Cross-cluster traffic: requests/s, member by member":
			exprs["matrix"] = p.Targets[0].Expr
		case "Cross-cluster traffic: share leaving each member":
			exprs["leaving"] = p.Targets[0].Expr
		case "Cross-cluster traffic: bytes/s, member by member":
			exprs["bytes_out"], exprs["bytes_back"] = p.Targets[0].Expr, p.Targets[1].Expr
		}
	}
	if len(exprs) != 4 {
		t.Fatalf("cross-cluster panels not found: %v", exprs)
	}
	dir := t.TempDir()
	var rules []map[string]string
	for name, e := range exprs {
		rules = append(rules, map[string]string{"record": name, "expr": e})
	}
	write := func(name string, v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rulesFile := write("rules.yaml", map[string]any{"groups": []any{map[string]any{"name": "panels", "rules": rules}}})
	named := func(name, cluster, src, dst, instance, perMinute string) map[string]string {
		return map[string]string{
			"series": name + `{envoy_cluster_name="` + cluster + `",source_member="` + src + `",destination_member="` + dst + `",instance="` + instance + `"}`,
			"values": "0+" + perMinute + "x10",
		}
	}
	series := func(cluster, src, dst, instance, perMinute string) map[string]string {
		return named("envoy_cluster_zone_upstream_rq_completed", cluster, src, dst, instance, perMinute)
	}
	sample := func(name, labels string, v float64) map[string]any {
		return map[string]any{"labels": name + "{" + labels + "}", "value": v}
	}
	testFile := write("test.yaml", map[string]any{
		"rule_files":          []string{rulesFile},
		"evaluation_interval": "1m",
		"tests": []any{map[string]any{
			"interval": "1m",
			"input_series": []any{
				series("shop/cart/80", "use1", "use1", "gw-use1", "60"),
				series("shop/cart/80", "use1", "use2", "gw-use1", "120"),
				series("shop/api/80", "use1", "use2", "gw-use1", "60"),
				series("shop/cart/80", "usw1", "use2", "gw-usw1", "60"),
				series("shop/api/80", "use2", "use2", "gw-use2", "60"),
				named("envoy_eastwest_traffic_request_bytes", "shop/cart/80", "use1", "use2", "gw-use1", "6000"),
				named("envoy_eastwest_traffic_request_bytes", "shop/api/80", "use1", "use2", "gw-use1", "600"),
				named("envoy_eastwest_traffic_response_bytes", "shop/cart/80", "use1", "use2", "gw-use1", "6000"),
			},
			"promql_expr_test": []any{
				map[string]any{"expr": "leaving", "eval_time": "10m", "exp_samples": []any{
					sample("leaving", `source_member="use1"`, 0.75),
					sample("leaving", `source_member="usw1"`, 1),
					sample("leaving", `source_member="use2"`, 0),
				}},
				map[string]any{"expr": "matrix", "eval_time": "10m", "exp_samples": []any{
					sample("matrix", `source_member="use1",destination_member="use1"`, 1),
					sample("matrix", `source_member="use1",destination_member="use2"`, 3),
					sample("matrix", `source_member="usw1",destination_member="use2"`, 1),
					sample("matrix", `source_member="use2",destination_member="use2"`, 1),
				}},
				map[string]any{"expr": "bytes_out", "eval_time": "10m", "exp_samples": []any{
					sample("bytes_out", `source_member="use1",destination_member="use2"`, 110),
				}},
				map[string]any{"expr": "bytes_back", "eval_time": "10m", "exp_samples": []any{
					sample("bytes_back", `source_member="use1",destination_member="use2"`, 100),
				}},
			},
		}},
	})
	out, err := exec.Command(testkit.Promtool(t), "test", "rules", testFile).CombinedOutput() //nolint:gosec // the test's own tool and files
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}
