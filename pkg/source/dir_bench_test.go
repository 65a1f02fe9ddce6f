package source

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/fixture"
)

// scale10k is 10,000 services, each exported from 2 of 3 members with 3
// endpoints per member: 60,000 objects in 200 files.
var scale10k = fixture.Scale{Services: 10_000, Members: 3, Exporters: 2, Endpoints: 3}

// BenchmarkScan10kServices is the first scan of a large folder: read,
// decode (on every core) and diff.
func BenchmarkScan10kServices(b *testing.B) {
	dir := b.TempDir()
	fixture.WriteClusterSet(b, dir, scale10k)
	for b.Loop() {
		if _, _, err := NewDir(dir, quietLog()).Scan(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRescanUnchanged10kServices is the safety-net rescan (once a
// second) of a large folder nothing changed in for a while: stats only.
// (Files modified in the last 2 s are compared by content: racyWindow.)
func BenchmarkRescanUnchanged10kServices(b *testing.B) {
	dir := b.TempDir()
	fixture.WriteClusterSet(b, dir, scale10k)
	old := time.Now().Add(-time.Hour)
	if err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(path, old, old)
	}); err != nil {
		b.Fatal(err)
	}
	d := NewDir(dir, quietLog())
	if _, _, err := d.Scan(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		evs, _, err := d.Scan()
		if err != nil || len(evs) != 0 {
			b.Fatal(err, len(evs))
		}
	}
}
