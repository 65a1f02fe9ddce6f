package main

import (
	"io"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the clients' process.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(clientsMain(cfg, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// The harness runs end to end on a small ClusterSet for every cache and
// protocol: every client syncs and receives every change. (It checks that
// the harness works; the figures come from `make load`.)
func TestHarnessSmoke(t *testing.T) {
	results, err := Run(Config{Clients: 4, Services: 30, Endpoints: 6, Changes: 3, SlowChanges: 2,
		Caches: []string{"ours", "linear", "snapshot"}, Protocols: []string{"sotw", "delta"}}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 6 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		if r.ColdSync <= 0 || r.Changes == 0 || r.Max <= 0 || r.Max > time.Minute {
			t.Errorf("%s/%s: %+v", r.Cache, r.Protocol, r)
		}
	}
	if testing.Verbose() {
		Print(os.Stdout, results)
	}
}
