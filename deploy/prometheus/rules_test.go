package prometheus

import (
	"os"
	"os/exec"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/metrics"
)

// The rules are valid (promtool check rules) and fire as their unit tests
// say (promtool test rules): when they should, with the labels and
// annotations operators read, and not otherwise.
func TestRulesCheckAndUnitTests(t *testing.T) {
	bin := testkit.Promtool(t)
	for _, args := range [][]string{{"check", "rules", "eastwest-rules.yaml"}, {"test", "rules", "eastwest-rules.test.yaml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput() //nolint:gosec // the test's own tool and files
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// Every rule reads metrics eastwest exports, and the PrometheusRule
// shipped for Kubernetes holds exactly these groups.
func TestRulesReadExportedMetricsAndShipAsPrometheusRule(t *testing.T) {
	raw, err := os.ReadFile("eastwest-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	have := metrics.Names()
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			names := metrics.NamesIn(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s reads no eastwest metric", r.Alert)
			}
			for _, name := range names {
				if !have[name] {
					t.Errorf("%s reads %s, which eastwest does not export", r.Alert, name)
				}
			}
		}
	}
	if n < 8 {
		t.Fatalf("%d rules", n)
	}
	pr, err := os.ReadFile("../kubernetes/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal(pr, &obj.Object); err != nil {
		t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedMap(obj.Object, "spec")
	var file map[string]any
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	a, _ := yaml.Marshal(spec)
	b, _ := yaml.Marshal(file)
	if obj.GetKind() != "PrometheusRule" || string(a) != string(b) {
		t.Errorf("deploy/kubernetes/prometheusrule.yaml's spec differs from eastwest-rules.yaml:\n%s\n---\n%s", a, b)
	}
}
