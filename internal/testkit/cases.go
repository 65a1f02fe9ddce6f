package testkit

import (
	"path/filepath"
	"testing"
)

// Cases returns the files or folders matching pattern, the cases of a
// test read from disk, and fails the test when there are none: a glob
// that matches nothing (a moved testdata folder, a typo) would otherwise
// leave the test passing without testing anything.
func Cases(t testing.TB, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no test case matches %s", pattern)
	}
	return files
}
