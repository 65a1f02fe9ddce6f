package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFile writes a file as editors and GitOps tools save one: its
// folders made, the content written to a dot file beside it (which the
// ClusterSet folder source skips) and renamed over it, so that a reader
// never sees it half written.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
