package main

import (
	"flag"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/cptest"
)

// Every metric the README lists is exported from the start, before any
// client or change, so that dashboards and alerts see zeros rather than
// no data on a quiet server; the ones about Kubernetes members' connections
// (none in a YAML folder) are the exception the README names.
func TestReadmeMetricsArePresentFromTheStart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `/metrics` |") {
			row = line
		}
	}
	if row == "" {
		t.Fatal("no /metrics row in the README")
	}
	names := regexp.MustCompile("`([a-z_]+)(\\{[^`]*\\})?`").FindAllStringSubmatch(row[strings.Index(row, "prefix"):], -1)
	if len(names) < 20 {
		t.Fatalf("found %d metric names in the README's row: %s", len(names), row)
	}
	app := cptest.Start(t, "../../examples/clusterset")
	resp, err := http.Get("http://" + app.DebugAddr() + "/metrics") //nolint:noctx // the test's own server
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	kubeOnly := map[string]bool{"source_connection_state": true, "source_connection_failures": true}
	for _, n := range names[1:] { // the first is the prefix, eastwest_
		name := "eastwest_" + n[1]
		if kubeOnly[n[1]] {
			continue
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{|_bucket|_count|_sum| )`).Match(body) {
			t.Errorf("%s is listed in the README but not exported at start", name)
		}
	}
}

// The README's table of `xds serve` flags lists every flag serve has.
func TestReadmeListsEveryServeFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "### `xds serve`")
	end := strings.Index(string(readme)[start+1:], "\n### ")
	if start < 0 || end < 0 {
		t.Fatal("no `xds serve` section in the README")
	}
	table := string(readme)[start : start+1+end]
	fs, _ := serveFlags(io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(table, "`--"+f.Name+"`") {
			t.Errorf("the README's serve flags lack --%s (%s)", f.Name, f.Usage)
		}
	})
}
