package writeback

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// Derived Service names are valid Service names, stable for a service and
// different between services (even ones whose ns/name concatenate alike).
func TestDerivedName(t *testing.T) {
	a := DerivedName(mcs.ServiceKey{Namespace: "ns", Name: "web"})
	if a != DerivedName(mcs.ServiceKey{Namespace: "ns", Name: "web"}) {
		t.Error("not stable")
	}
	if msgs := validation.IsDNS1035Label(a); len(msgs) > 0 {
		t.Errorf("%q is not a Service name: %v", a, msgs)
	}
	for _, other := range []mcs.ServiceKey{{Namespace: "ns", Name: "web2"}, {Namespace: "nsw", Name: "eb"}, {Namespace: "web", Name: "ns"}} {
		if DerivedName(other) == a {
			t.Errorf("%v collides with ns/web", other)
		}
	}
}

// Labels of written objects always carry the managed-by mark and never
// change the caller's map.
func TestManagedLabels(t *testing.T) {
	in := map[string]string{"tier": "web"}
	out := managedLabels(in)
	if out[LabelManagedBy] != ManagedByValue || out["tier"] != "web" || len(in) != 1 {
		t.Errorf("managedLabels(%v) = %v", in, out)
	}
	if managedLabels(nil)[LabelManagedBy] != ManagedByValue {
		t.Error("nil labels not marked")
	}
}

// A Gateway's status write (a new resource version, the same generation)
// and parameters rebuilt equal (new pointers, equal values) deploy the
// same: no provisioning pass; a new generation or a changed parameter
// does.
func TestProvisionsEqual(t *testing.T) {
	gw := func(gen int64, rv string) *gwapiv1.Gateway {
		g := &gwapiv1.Gateway{}
		g.Namespace, g.Name, g.UID, g.Generation, g.ResourceVersion = "shop", "public", "u1", gen, rv
		return g
	}
	params := func(replicas int32) provision.Params {
		p, err := provision.Resolve(&provision.GatewayParameters{Spec: provision.GatewayParametersSpec{
			Replicas: &replicas, Identity: &provision.IdentityParameters{IssuerSecret: &provision.SecretRef{Namespace: "eastwest-system", Name: "ca"}},
		}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []gatewayapi.Provision{{Gateway: gw(1, "10"), Class: "eastwest", Params: params(2)}}
	tests := []struct {
		name  string
		other []gatewayapi.Provision
		equal bool
	}{
		{"status written", []gatewayapi.Provision{{Gateway: gw(1, "11"), Class: "eastwest", Params: params(2)}}, true},
		{"spec changed", []gatewayapi.Provision{{Gateway: gw(2, "12"), Class: "eastwest", Params: params(2)}}, false},
		{"parameter changed", []gatewayapi.Provision{{Gateway: gw(1, "10"), Class: "eastwest", Params: params(3)}}, false},
		{"kept", []gatewayapi.Provision{{Gateway: gw(1, "10"), Class: "eastwest", Keep: true}}, false},
		{"gone", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := provisionsEqual(base, tc.other); got != tc.equal {
				t.Errorf("provisionsEqual = %v, want %v", got, tc.equal)
			}
		})
	}
}

// The lag is the age of the oldest change not yet written: nothing
// before a change, the change's age while it waits for a pass, nothing
// once a pass has written it; and nothing, with nothing pending, in a
// replica that does not lead (it owes no write: its metrics must not
// fire the write-back alerts).
func TestLagIsTheOldestChangeNotWritten(t *testing.T) {
	w := New(&fakeMembers{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	if lag := w.Lag(now); lag != 0 {
		t.Fatalf("lag %v before any change", lag)
	}
	state := &mcs.State{Clusters: []mcs.ClusterInfo{{Member: "a", ID: "a"}}}
	w.Changed(state, []mcs.ServiceKey{{Namespace: "ns", Name: "a"}}, false)
	w.Changed(state, []mcs.ServiceKey{{Namespace: "ns", Name: "b"}}, false)
	if lag, n := w.Lag(time.Now().Add(3*time.Second)), w.Pending(); lag != 0 || n != 0 {
		t.Fatalf("a replica that does not lead: lag %v, %d pending", lag, n)
	}
	w.running.Store(true) // as Run does
	if lag := w.Lag(time.Now().Add(3 * time.Second)); lag < 3*time.Second {
		t.Fatalf("lag %v of a change 3 s old, not yet taken", lag)
	}
	if n := w.Pending(); n != 2 {
		t.Fatalf("%d pending, want 2", n)
	}
	w.running.Store(false)
	runUntilEnd(t, w)
	deadline := time.Now().Add(10 * time.Second)
	for w.Passes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no pass in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lag := w.Lag(time.Now()); lag != 0 {
		t.Errorf("lag %v after the pass that wrote the changes", lag)
	}
}

// A member's pass after a change writes only the services the member has
// something of: one it imports, one it exports, or one whose import this
// writer wrote there and has not removed; any other changed service is
// skipped (a full pass, at each resync, repairs the rest).
func TestMemberConcernedByService(t *testing.T) {
	k := mcs.ServiceKey{Namespace: "ns", Name: "web"}
	imported := &mcs.ServiceState{Key: k, Import: &mcs.Import{ImportedIn: []mcs.ClusterID{"a", "b"}}}
	exported := &mcs.ServiceState{Key: k, Exports: []mcs.ExportStatus{{Cluster: "a"}}}
	tests := []struct {
		name  string
		st    *mcs.ServiceState
		wrote bool
		want  bool
	}{
		{"imported here", imported, false, true},
		{"exported from here", exported, false, true},
		{"imported elsewhere, never here", &mcs.ServiceState{Key: k, Import: &mcs.Import{ImportedIn: []mcs.ClusterID{"b"}}}, false, false},
		{"imported elsewhere, its import written here before", &mcs.ServiceState{Key: k, Import: &mcs.Import{ImportedIn: []mcs.ClusterID{"b"}}}, true, true},
		{"gone, never here", nil, false, false},
		{"gone, written here before", nil, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &member{}
			if tc.wrote {
				m.imported = map[mcs.ServiceKey]time.Time{k: time.Now()}
			}
			if got := m.concerns("a", k, tc.st); got != tc.want {
				t.Errorf("concerns = %v, want %v", got, tc.want)
			}
		})
	}
}

// While the member's cache still shows what a slice held before this
// writer's last write to it (its watch event has not come), the
// apiserver holds that write: it is what the next pass compares with (a
// change undone between two passes is written back; the same content is
// not written again). Any other cache content, or a record older than
// cacheBehind, is compared as usual; a slice created and no longer wanted
// before the cache showed it is found for deletion.
func TestUnseenSliceWrites(t *testing.T) {
	tests := []struct {
		name   string
		record *sliceWrite
		seen   string
		wrote  string
		unseen bool
	}{
		{"nothing written", nil, "b", "", false},
		{"written, the cache behind", &sliceWrite{before: "b", wrote: "w"}, "b", "w", true},
		{"created, the cache behind", &sliceWrite{before: "", wrote: "w"}, "", "w", true},
		{"deleted, the cache behind", &sliceWrite{before: "b", wrote: ""}, "b", "", true},
		{"the cache moved on", &sliceWrite{before: "b", wrote: "w"}, "x", "", false},
		{"written too long ago", &sliceWrite{before: "b", wrote: "w", at: time.Now().Add(-time.Minute)}, "b", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &member{}
			if r := tc.record; r != nil {
				m.noteSliceWrite("ns", "s", "web", r.before, r.wrote)
				if !r.at.IsZero() {
					w := m.sliceWrites["ns/s"]
					w.at = r.at
					m.sliceWrites["ns/s"] = w
				}
			}
			if wrote, unseen := m.unseenSliceWrite("ns", "s", tc.seen); wrote != tc.wrote || unseen != tc.unseen {
				t.Errorf("unseenSliceWrite = %q, %v; want %q, %v", wrote, unseen, tc.wrote, tc.unseen)
			}
		})
	}
	m := &member{}
	m.noteSliceWrite("ns", "gone", "web", "", "w")
	m.noteSliceWrite("ns", "kept", "web", "", "w")
	m.noteSliceWrite("ns", "other", "api", "", "w")
	m.noteSliceWrite("ns", "updated", "web", "b", "w")
	if got := m.unseenCreates(mcs.ServiceKey{Namespace: "ns", Name: "web"}, map[string]bool{"kept": true}); !slices.Equal(got, []string{"gone"}) {
		t.Errorf("unseenCreates = %v, want [gone]", got)
	}
}

// The records of unseen slice writes stay bounded when the slices they
// name are never written again (a member's exports deleted one after the
// other): expired ones are swept as the records grow.
func TestUnseenSliceWritesAreBounded(t *testing.T) {
	m := &member{}
	for i := range 10_000 {
		m.noteSliceWrite("ns", fmt.Sprint("s", i), "web", "", "w")
		w := m.sliceWrites["ns/"+fmt.Sprint("s", i)]
		w.at = time.Now().Add(-time.Minute) // expired at once
		m.sliceWrites["ns/"+fmt.Sprint("s", i)] = w
	}
	if n := len(m.sliceWrites); n > 512 {
		t.Errorf("%d records after 10,000 expired writes; want them swept", n)
	}
}

// An import, an export's status or a derived Service this writer has just
// written is read from the apiserver while the cache does not show that
// write (another resource version, or the object still there after a
// delete); once it does, or after cacheBehind, the cache is read again.
func TestOwnWritesUnseenByTheCache(t *testing.T) {
	tests := []struct {
		name   string
		rv     string // written ("" deleted), none when "-"
		old    bool
		seenRV string
		found  bool
		unseen bool
	}{
		{"nothing written", "-", false, "5", true, false},
		{"updated, the cache behind", "7", false, "5", true, true},
		{"updated, the cache shows it", "7", false, "7", true, false},
		{"created, not in the cache yet", "7", false, "", false, true},
		{"deleted, still in the cache", "", false, "5", true, true},
		{"deleted, gone from the cache", "", false, "", false, false},
		{"written too long ago", "7", true, "5", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &member{}
			if tc.rv != "-" {
				m.noteOwn("serviceimports", "ns", "web", tc.rv)
				if tc.old {
					w := m.own["serviceimports/ns/web"]
					w.at = time.Now().Add(-time.Minute)
					m.own["serviceimports/ns/web"] = w
				}
			}
			if got := m.ownUnseen("serviceimports", "ns", "web", tc.seenRV, tc.found); got != tc.unseen {
				t.Errorf("ownUnseen = %v, want %v", got, tc.unseen)
			}
		})
	}
}
