package main

import (
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/eastwest-dev/eastwest/internal/cptest"
)

// Every metric docs/metrics.md lists is exported from the start, before any
// client or change, so that dashboards and alerts see zeros rather than
// no data on a quiet server; the ones about Kubernetes members' connections
// (none in a YAML folder) and the write-back's failures per member are the
// exception the README names.
func TestDocsMetricsArePresentFromTheStart(t *testing.T) {
	readme, err := os.ReadFile("../../docs/metrics.md")
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
		t.Fatal("no /metrics row in docs/metrics.md")
	}
	names := regexp.MustCompile("`([a-z_]+)(\\{[^`]*\\})?`").FindAllStringSubmatch(row[strings.Index(row, "prefix"):], -1)
	if len(names) < 20 {
		t.Fatalf("found %d metric names in docs/metrics.md's row: %s", len(names), row)
	}
	app := cptest.Start(t, "../../examples/clusterset")
	resp, err := http.Get("http://" + app.DebugAddr() + "/metrics") //nolint:noctx // the test's own server
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	kubeOnly := map[string]bool{"source_connection_state": true, "source_connection_failures": true, "writeback_member_failures_total": true, "member_profile_control_plane_healthy": true}
	for _, n := range names[1:] { // the first is the prefix, eastwest_
		name := "eastwest_" + n[1]
		if kubeOnly[n[1]] {
			continue
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{|_bucket|_count|_sum| )`).Match(body) {
			t.Errorf("%s is listed in docs/metrics.md but not exported at start", name)
		}
	}
}

// The table of `xds serve` flags in docs/cli.md lists every flag serve has.
func TestDocsListEveryServeFlag(t *testing.T) {
	readme, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "## `xds serve`")
	end := strings.Index(string(readme)[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("no `xds serve` section in docs/cli.md")
	}
	table := string(readme)[start : start+1+end]
	fs, _ := serveFlags(io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(table, "`--"+f.Name+"`") {
			t.Errorf("docs/cli.md's serve flags lack --%s (%s)", f.Name, f.Usage)
		}
	})
}

// Every relative link of the README and docs/ leads to a file that
// exists, and every #anchor to a heading of its page (GitHub's slugs).
func TestDocsLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(pages) < 10 {
		t.Fatalf("docs/: %v %v", pages, err)
	}
	pages = append(pages, "../../README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: %v", page, target, err)
				continue
			}
			if anchor != "" && !slices.Contains(slugs(t, path), anchor) {
				t.Errorf("%s: link %s: no heading with that anchor in %s", page, target, path)
			}
		}
	}
}

// slugs are the anchors GitHub gives a Markdown file's headings.
func slugs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var s strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				s.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				s.WriteRune(r)
			}
		}
		out = append(out, s.String())
	}
	return out
}
