package writeback

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// fakeMembers stands for the member registry in the scheduler's tests:
// members named "down-*" have a connection that never discovered what it
// serves (their passes fail), "slow-*" members' passes wait for release;
// the others are folder members (their passes write nothing and pass).
type fakeMembers struct {
	mu      sync.Mutex
	passes  map[string]int
	release chan struct{}
}

func (f *fakeMembers) Conn(name string) (*source.Conn, bool) {
	f.mu.Lock()
	if f.passes == nil {
		f.passes = map[string]int{}
	}
	f.passes[name]++
	f.mu.Unlock()
	switch {
	case len(name) > 5 && name[:5] == "down-":
		return &source.Conn{}, true
	case len(name) > 5 && name[:5] == "slow-":
		<-f.release
	}
	return nil, false
}

func (f *fakeMembers) SyncedAt(string) time.Time { return time.Time{} }

func (f *fakeMembers) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passes[name]
}

func key(name string) mcs.ServiceKey { return mcs.ServiceKey{Namespace: "ns", Name: name} }

// stateOf is a state of the given members, each exporting the services
// named after it.
func stateOf(members ...string) *mcs.State {
	st := &mcs.State{}
	svcs := map[mcs.ServiceKey]*mcs.ServiceState{}
	for _, m := range members {
		st.Clusters = append(st.Clusters, mcs.ClusterInfo{Member: m, ID: mcs.ClusterID(m)})
		svcs[key(m)] = &mcs.ServiceState{Key: key(m), Backends: []mcs.ClusterBackend{{Cluster: mcs.ClusterID(m)}}}
	}
	st.Services = mcs.NewServices(svcs)
	return st
}

// runUntilEnd runs w (as the leader does) until the test ends.
func runUntilEnd(t *testing.T, w *Writeback) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.Run(ctx, time.Hour); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not in 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A member's pass takes every change since its last one, each service
// once however often it changed; members take the log independently, a
// new member owes a full pass, and the log is dropped once every member
// took it.
func TestMemberPassesCoalesceChanges(t *testing.T) {
	w := New(&fakeMembers{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	state := stateOf("a", "b")
	take := func(name string) memberWork {
		w.mu.Lock()
		defer w.mu.Unlock()
		work := w.takeLocked(w.queues[name])
		w.queues[name].running = false
		w.truncateLocked(time.Now())
		return work
	}
	w.Changed(state, []mcs.ServiceKey{key("a")}, true)
	if work := take("a"); !work.full || !slices.Equal(work.keys, []mcs.ServiceKey{key("a")}) {
		t.Fatalf("a's first pass: full %v, keys %v; want full, [ns/a]", work.full, work.keys)
	}
	for _, k := range []string{"x", "y", "x", "x"} {
		w.Changed(state, []mcs.ServiceKey{key(k)}, false)
	}
	if work := take("a"); work.full || !slices.Equal(work.keys, []mcs.ServiceKey{key("x"), key("y")}) {
		t.Errorf("a's second pass: full %v, keys %v; want [ns/x ns/y] coalesced", work.full, work.keys)
	}
	if n := len(w.changes); n != 5 {
		t.Errorf("%d changes kept while b has not taken them; want 5", n)
	}
	if work := take("b"); !work.full || !slices.Equal(work.keys, []mcs.ServiceKey{key("a"), key("x"), key("y")}) {
		t.Errorf("b's first pass: full %v, keys %v; want full, changed first", work.full, work.keys)
	}
	if n := len(w.changes); n != 0 {
		t.Errorf("%d changes kept once every member took them", n)
	}
}

// A member whose pass is slow holds no other member up: the others take
// every change meanwhile, pass after pass; and the write-back counts a
// pass (caught up) only once the slow member is done.
func TestASlowMemberHoldsNoOtherUp(t *testing.T) {
	f := &fakeMembers{release: make(chan struct{})}
	w := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	state := stateOf("fast", "slow-b")
	w.Changed(state, nil, true)
	runUntilEnd(t, w)
	released := false
	defer func() {
		if !released {
			close(f.release)
		}
	}()
	for i := range 5 {
		w.Changed(state, []mcs.ServiceKey{key(fmt.Sprint(i))}, false)
		waitUntil(t, fmt.Sprintf("fast's pass of change %d", i), func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			q := w.queues["fast"]
			return !q.running && q.cursor == w.head()
		})
	}
	if n := f.count("fast"); n < 2 {
		t.Errorf("fast had %d passes while slow-b's first ran; want one per change", n)
	}
	if p := w.Passes(); p != 0 {
		t.Errorf("%d passes counted while slow-b owes its first", p)
	}
	if n := w.Pending(); n == 0 {
		t.Error("nothing pending while slow-b owes everything")
	}
	close(f.release)
	released = true
	waitUntil(t, "caught up", func() bool { return w.Passes() > 0 && w.Pending() == 0 })
	if lag := w.Lag(time.Now()); lag != 0 {
		t.Errorf("lag %v once caught up", lag)
	}
}

// A member whose pass fails backs off alone: the others go on and the
// write-back catches up without it; meanwhile it owes a full pass (every
// service pending), holds no change in the log and adds nothing to the
// lag; its source syncing again makes it due at once.
func TestAFailingMemberBacksOffAlone(t *testing.T) {
	f := &fakeMembers{}
	w := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var failed []string
	var mu sync.Mutex
	w.OnMemberFailed(func(m string) { mu.Lock(); failed = append(failed, m); mu.Unlock() })
	state := stateOf("a", "down-b")
	w.Changed(state, nil, true)
	runUntilEnd(t, w)
	waitUntil(t, "down-b failing", func() bool { return len(w.Retries()) == 1 })
	r := w.Retries()[0]
	if r.Member != "down-b" || r.LastError != errNotConnected.Error() {
		t.Errorf("retries %+v", r)
	}
	before := f.count("a")
	w.Changed(state, []mcs.ServiceKey{key("a")}, false)
	waitUntil(t, "a's pass, and the write-back caught up but for down-b", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return f.count("a") > before && w.workers == 0 && len(w.changes) == 0
	})
	if n := w.Pending(); n != state.Services.Len() {
		t.Errorf("%d pending while down-b owes a full pass; want every service (%d)", n, state.Services.Len())
	}
	if lag := w.Lag(time.Now()); lag != 0 {
		t.Errorf("lag %v: a member backing off counts in its retry, not in the lag", lag)
	}
	w.MemberSynced("down-b")
	waitUntil(t, "down-b retried at once", func() bool { return len(w.Retries()) == 1 && w.Retries()[0].Failures == 2 })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(failed, []string{"down-b", "down-b"}) {
		t.Errorf("failures told: %v", failed)
	}
}

// A change of the members' ClusterInfo is scoped: the changed member owes
// a full pass and the others write the services it exports (before or
// after); a member that joins owes a full pass; one that left has its
// services written again; a change of the set of networks makes every
// member's pass full.
func TestClusterChangesAreScoped(t *testing.T) {
	base := stateOf("a", "b", "c")
	with := func(f func(*mcs.State)) *mcs.State {
		st := *base
		st.Clusters = slices.Clone(base.Clusters)
		f(&st)
		return &st
	}
	tests := []struct {
		name     string
		after    *mcs.State
		full     []string
		services []mcs.ServiceKey
	}{
		{"nothing changed", base, nil, nil},
		{"a's gateways moved", with(func(s *mcs.State) {
			s.Clusters[0].Gateways = []mcs.GatewayAddress{{Address: "10.0.0.1", Port: 15443}}
		}), []string{"a"}, []mcs.ServiceKey{key("a")}},
		{"d joined", func() *mcs.State { s := stateOf("a", "b", "c", "d"); return s }(), []string{"d"}, []mcs.ServiceKey{key("d")}},
		{"c left", stateOf("a", "b"), nil, []mcs.ServiceKey{key("c")}},
		{"b left out of the merge", with(func(s *mcs.State) { s.Clusters[1].ID, s.Clusters[1].Error = "", "cluster ID taken" }), []string{"b"}, []mcs.ServiceKey{key("b")}},
		{"c on a network of its own", with(func(s *mcs.State) { s.Clusters[2].Network = "west" }), []string{"a", "b", "c"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full, services := clusterScope(base, tc.after)
			var names []string
			for n := range full {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.full) || !slices.Equal(services, tc.services) {
				t.Errorf("full %v, services %v; want %v, %v", names, services, tc.full, tc.services)
			}
		})
	}
}
