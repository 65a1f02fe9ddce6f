package controlplane_test

import (
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/fixture"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
)

// BenchmarkStartup10kServices is the time from start to ready (the first
// publish of every view) of a folder of 10,000 services, each exported
// from 2 of 3 members with 3 endpoints per member.
//
//	go test -run '^$' -bench Startup -benchtime 1x ./pkg/controlplane
func BenchmarkStartup10kServices(b *testing.B) {
	dir := b.TempDir()
	fixture.WriteClusterSet(b, dir, fixture.Scale{Services: 10_000, Members: 3, Exporters: 2, Endpoints: 3})
	for b.Loop() {
		start := time.Now()
		_, stop := cptest.Run(b, controlplane.Config{Dir: dir})
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-ready")
		stop()
	}
}
