package source

import (
	"io"
	"log/slog"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// The kinds table alone drives a member's informers: every version of
// every kind it lists gets an informer when a member serves that version
// (so a new row needs no hand-written informer), with the table's
// selectors, and no informer is made for a kind the member does not serve.
func TestEveryKindVersionHasAnInformer(t *testing.T) {
	conn, err := NewConn("m", "test", 1, &rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	kc := NewKubeCluster(conn, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	for _, kd := range event.Kinds {
		caps := Capabilities{Resources: map[schema.GroupKind]schema.GroupVersionResource{
			kd.GVK.GroupKind(): kd.GVK.GroupVersion().WithResource(kd.Resource),
		}}
		set, err := kc.newInformers(caps)
		if err != nil {
			t.Errorf("%v: %v", kd.GVK, err)
			continue
		}
		want := 1
		if kd.Client == event.Inventory {
			want = 0 // read from the inventory, not from members
		}
		if len(set.informers) != want {
			t.Errorf("%v: %d informers, want %d", kd.GVK, len(set.informers), want)
		}
		if kd.Resource == "" || kd.ValidName == nil || kd.New == nil {
			t.Errorf("%v: its row lacks a resource, a name rule or a constructor", kd.GVK)
		}
		if !kd.Required && kd.Unread == "" && kd.Client != event.Inventory {
			t.Errorf("%v: an optional kind says nothing of what a member that does not grant it loses", kd.GVK)
		}
	}
	set, err := kc.newInformers(Capabilities{})
	if err != nil || len(set.informers) != 0 {
		t.Errorf("a member serving nothing: %d informers, %v", len(set.informers), err)
	}
}

// The table's EndpointSlice selector leaves out exactly the slices the
// write-back writes (managed-by the MCS controller name).
func TestOwnSlicesExcludedNamesOurController(t *testing.T) {
	if want := "endpointslice.kubernetes.io/managed-by!=" + mcs.ControllerName; event.OwnSlicesExcluded != want {
		t.Errorf("OwnSlicesExcluded = %q, want %q", event.OwnSlicesExcluded, want)
	}
}
