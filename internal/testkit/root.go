package testkit

import (
	"path/filepath"
	"runtime"
)

// RepoRoot is the repository's folder, found from this file's place in
// it (tests that read the repo's docs, charts and examples, or build its
// commands, run from their own package's folder).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
