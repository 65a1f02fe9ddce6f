package controlplane_test

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
)

// BenchmarkStartup10kServices is the time from start to ready (the first
// publish of every view) of a folder of 10,000 services, each exported
// from 2 of 3 members with 3 endpoints per member, and the heap then.
//
//	go test -run '^$' -bench Startup -benchtime 1x ./pkg/controlplane
func BenchmarkStartup10kServices(b *testing.B) {
	dir := b.TempDir()
	fixture.WriteClusterSet(b, dir, fixture.Scale{Services: 10_000, Members: 3, Exporters: 2, Endpoints: 3})
	for b.Loop() {
		start := time.Now()
		_, stop := cptest.Run(b, controlplane.Config{Dir: dir})
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-ready")
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "heap-MB")
		if f, err := os.Create(os.Getenv("HEAPPROF")); err == nil {
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
		stop()
	}
}
