package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// Promtool is PROMTOOL, else the one `make promtool` builds into
// .cache/bin; the test fails (with what to run) when there is none.
func Promtool(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p := filepath.Join(RepoRoot(), ".cache", "bin", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no promtool at %s: run `make promtool` (test/tools/promtool.sh), or set PROMTOOL", p)
	}
	return p
}
