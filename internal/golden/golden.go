package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// checked records every golden file compared in this test binary, for
// NoOrphans.
var checked sync.Map

// update is set by `go test ./... -update`; `make golden` does that and
// `make check-golden` fails when it changes a file.
var update = flag.Bool("update", false, "rewrite golden files with the current output")

// Check compares got with the golden file at path, or rewrites the file
// when -update is set. A missing golden file is an error without -update.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	checked.Store(filepath.Clean(path), true)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // testdata is committed source, readable by all
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil { //nolint:gosec // as above
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run with -update to accept):\n%s", path, diff(want, got))
	}
}

// NoOrphans fails for every file matching pattern that no Check compared:
// a golden file whose case is gone would otherwise linger, untested.
//
// With a -run pattern that selects subtests only some cases run, so the
// check is not made.
func NoOrphans(t testing.TB, pattern string) {
	t.Helper()
	if f := flag.Lookup("test.run"); f != nil && strings.Contains(f.Value.String(), "/") {
		return
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := checked.Load(filepath.Clean(f)); !ok {
			t.Errorf("golden file %s belongs to no test case: remove it", f)
		}
	}
}

// diff shows the first lines where want and got part ways.
func diff(want, got []byte) string {
	wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	var b bytes.Buffer
	shown := 0
	for i := 0; i < max(len(wl), len(gl)) && shown < 20; i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(i + 1))
			b.WriteString(":\n  - ")
			b.Write(w)
			b.WriteString("\n  + ")
			b.Write(g)
			b.WriteString("\n")
			shown++
		}
	}
	return b.String()
}
