package writeback

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// A ledger entry is "<namespace>.<name>" -> "<port>=<relay port>,...";
// anything else is skipped (the ledger is the operator's, but a hand
// edit must not stop every replica from reading the rest).
func TestParseLedgerEntry(t *testing.T) {
	tests := []struct {
		key, value string
		want       map[int32]int32
	}{
		{"ns.web", "80=20001", map[int32]int32{80: 20001}},
		{"ns.web", "80=20001,443=29999", map[int32]int32{80: 20001, 443: 29999}},
		{"ns.web", "80=19999", nil},     // below the range
		{"ns.web", "80=30000", nil},     // above it
		{"ns.web", "0=20001", nil},      // no port 0
		{"ns.web", "80:20001", nil},     // not port=relay
		{"ns.web", "", nil},             // nothing
		{"ns.web.x", "80=20001", nil},   // a name has no dot
		{"nsweb", "80=20001", nil},      // no namespace
		{".web", "80=20001", nil},       // empty namespace
		{"ns.web", "80=20001,x=1", nil}, // one bad field spoils the entry
	}
	for _, tt := range tests {
		key, ports, err := parseLedgerEntry(tt.key, tt.value)
		if tt.want == nil {
			if err == nil {
				t.Errorf("%q: %q parsed as %v %v, want an error", tt.key, tt.value, key, ports)
			}
			continue
		}
		if err != nil || key != (mcs.ServiceKey{Namespace: "ns", Name: "web"}) || !maps.Equal(ports, tt.want) {
			t.Errorf("%q: %q parsed as %v %v (%v), want ns/web %v", tt.key, tt.value, key, ports, err, tt.want)
		}
	}
}

// The leader's rules for the ledger: a new port is recorded where the
// state has it, unless an entry already holds that slot; an entry is
// never changed while its port exists; an entry whose port is gone is
// dropped only when every member synced.
func TestLedgerWrite(t *testing.T) {
	web, api, db := mcs.ServiceKey{Namespace: "ns", Name: "web"}, mcs.ServiceKey{Namespace: "ns", Name: "api"}, mcs.ServiceKey{Namespace: "ns", Name: "db"}
	tests := []struct {
		name     string
		have     mcs.RelayPins
		state    map[mcs.ServiceKey]map[int32]int32
		complete bool
		want     mcs.RelayPins
	}{
		{"new ports are recorded", nil,
			map[mcs.ServiceKey]map[int32]int32{web: {80: 20001, 443: 20002}}, true,
			mcs.RelayPins{web: {80: 20001, 443: 20002}}},
		{"an entry is not changed while its port exists", mcs.RelayPins{web: {80: 20001}},
			map[mcs.ServiceKey]map[int32]int32{web: {80: 20005}}, true,
			mcs.RelayPins{web: {80: 20001}}},
		{"a slot an entry holds is not given to another port", mcs.RelayPins{web: {80: 20001}},
			map[mcs.ServiceKey]map[int32]int32{web: {80: 20009}, api: {80: 20001}}, true,
			mcs.RelayPins{web: {80: 20001}}},
		{"gone ports are dropped when every member synced", mcs.RelayPins{web: {80: 20001, 443: 20002}, db: {5432: 20003}},
			map[mcs.ServiceKey]map[int32]int32{web: {80: 20001}}, true,
			mcs.RelayPins{web: {80: 20001}}},
		{"and kept while one has not", mcs.RelayPins{web: {80: 20001, 443: 20002}, db: {5432: 20003}},
			map[mcs.ServiceKey]map[int32]int32{web: {80: 20001}, api: {80: 20004}}, false,
			mcs.RelayPins{web: {80: 20001, 443: 20002}, db: {5432: 20003}, api: {80: 20004}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			l := NewRelayLedger(client, "eastwest-system", "ledger", slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go l.informer.Run(ctx.Done())
			cache.WaitForCacheSync(ctx.Done(), l.informer.HasSynced)
			if tt.have != nil {
				if err := l.Write(ctx, state(tt.have), true); err != nil {
					t.Fatal(err)
				}
				waitPins(t, l, tt.have)
			}
			if err := l.Write(ctx, state(tt.state), tt.complete); err != nil {
				t.Fatal(err)
			}
			waitPins(t, l, tt.want)
		})
	}
}

func state(ports map[mcs.ServiceKey]map[int32]int32) *mcs.State {
	m := map[mcs.ServiceKey]*mcs.ServiceState{}
	for k, ps := range ports {
		st := &mcs.ServiceState{Key: k, Import: &mcs.Import{}}
		for p, n := range ps {
			st.Import.Ports = append(st.Import.Ports, mcs.ImportPort{ServicePort: mcsv1b1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP}, RelayPort: n})
		}
		m[k] = st
	}
	return &mcs.State{Services: mcs.NewServices(m)}
}

// waitPins waits for the ledger's informer to show want.
func waitPins(t *testing.T, l *RelayLedger, want mcs.RelayPins) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := l.Pins()
		if maps.EqualFunc(got, want, func(a, b map[int32]int32) bool { return maps.Equal(a, b) }) {
			return
		}
		if time.Now().After(deadline) {
			list, _ := l.client.CoreV1().ConfigMaps("eastwest-system").List(context.Background(), metav1.ListOptions{})
			t.Fatalf("the ledger holds %v (%d ConfigMaps), want %v", got, len(list.Items), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
