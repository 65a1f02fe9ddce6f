package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/test/netns"
)

// clustersLock is held, machine-wide, by the test process whose clusters
// run: clusters of two processes would take the same pod CIDRs
// (10.64.0.0/24, ...) and replace each other's routes to them on the
// host, and go test runs packages side by side (test/cluster,
// test/conformance, test/gatewayapi and test/clusterset all start
// clusters). A process waits for the other's clusters to end; within a
// process, tests share it.
const clustersLock = "/run/eastwest-test-clusters.lock"

var held struct {
	sync.Mutex
	tests   int
	release func()
}

// holdMachine takes the clusters' lock for the test (its Cleanup gives it
// back after the clusters' teardown, registered later, so run earlier).
func holdMachine(t testing.TB) {
	t.Helper()
	held.Lock()
	defer held.Unlock()
	if held.tests == 0 {
		began := time.Now()
		release, err := netns.Exclusive(clustersLock, func() {
			t.Logf("waiting for another process's clusters to end (%s; make clusterset-down stops a ClusterSet left running)", clustersLock)
		})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(began); d > time.Second {
			t.Logf("waited %s for them", d.Round(time.Second))
		}
		held.release = release
	}
	held.tests++
	t.Cleanup(func() {
		held.Lock()
		defer held.Unlock()
		if held.tests--; held.tests == 0 {
			held.release()
			held.release = nil
		}
	})
}
