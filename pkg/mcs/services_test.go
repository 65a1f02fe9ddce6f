package mcs

import (
	"fmt"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/event"
)

// A State's services never change after it is handed out, whatever the
// Store does next; a later State sees the changes; Len and All agree with
// Get.
func TestSnapshotsShareButNeverChange(t *testing.T) {
	s := NewStore(Options{})
	apply := func(evs ...event.Event) {
		t.Helper()
		for _, ev := range evs {
			if err := s.Apply(ev); err != nil {
				t.Fatal(err)
			}
		}
		s.Flush()
	}
	exported := func(member, name string) []event.Event {
		return []event.Event{
			{Member: member, Op: event.OpUpsert, Object: namespace("ns")},
			{Member: member, Op: event.OpUpsert, Object: service("ns", name, port("http", 80))},
			{Member: member, Op: event.OpUpsert, Object: export("ns", name, time.Second)},
		}
	}
	for i := range 300 {
		apply(exported("east", fmt.Sprint("s", i))...)
	}
	first := s.State()
	if n := first.Services.Len(); n != 300 {
		t.Fatalf("%d services, want 300", n)
	}
	s0 := first.Services.Get(ServiceKey{"ns", "s0"})
	apply(exported("east", "new")...)
	apply(event.Event{Member: "east", Op: event.OpDelete, Object: export("ns", "s0", 0)})
	second := s.State()
	if first.Services.Get(ServiceKey{"ns", "new"}) != nil || first.Services.Get(ServiceKey{"ns", "s0"}) != s0 || first.Services.Len() != 300 {
		t.Error("a State handed out changed with the Store")
	}
	if second.Services.Get(ServiceKey{"ns", "new"}) == nil || second.Services.Get(ServiceKey{"ns", "s0"}) != nil || second.Services.Len() != 300 {
		t.Errorf("the later State does not hold the changes (len %d)", second.Services.Len())
	}
	n := 0
	for k, st := range second.Services.All() {
		n++
		if second.Services.Get(k) != st {
			t.Fatalf("All and Get disagree on %v", k)
		}
	}
	if n != second.Services.Len() {
		t.Errorf("All yields %d, Len says %d", n, second.Services.Len())
	}
}

// BenchmarkSnapshotAfterOneChange is the cost of one EndpointSlice change
// merged and a new State handed out, at growing ClusterSets: it must not
// grow with the number of services (the services map is shared, not
// copied).
func BenchmarkSnapshotAfterOneChange(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := NewStore(Options{})
			_ = s.Apply(event.Event{Member: "east", Op: event.OpUpsert, Object: namespace("ns")})
			for i := range n {
				name := fmt.Sprint("svc-", i)
				_ = s.Apply(event.Event{Member: "east", Op: event.OpUpsert, Object: service("ns", name, port("http", 80))})
				_ = s.Apply(event.Event{Member: "east", Op: event.OpUpsert, Object: export("ns", name, time.Second)})
			}
			s.Flush()
			s.State()
			gen := 0
			b.ReportAllocs()
			for b.Loop() {
				gen++
				_ = s.Apply(event.Event{Member: "east", Op: event.OpUpsert, Object: benchSlice("svc-7", 0, gen)})
				s.Flush()
				if s.State().Services.Len() != n {
					b.Fatal("lost services")
				}
			}
		})
	}
}
