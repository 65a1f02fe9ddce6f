package source

import (
	"bytes"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/pkg/event"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
)

// FuzzLoad feeds whatever Decode accepts, split between two member
// clusters, through the Store and renders every cluster's objects: no input
// may panic, and the merged state keeps its invariants (every port's
// backends are exporting clusters, every import is wanted somewhere).
func FuzzLoad(f *testing.F) {
	f.Add([]byte(svcWeb+"---\n"+exportWeb), []byte(svcWeb+"---\n"+exportWeb))
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {clusterIP: None, ports: [{name: a, port: 1}, {name: b, port: 2, protocol: UDP}]}\n---\n"+exportWeb+
		"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: ns, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: a, port: 10}]\nendpoints: [{addresses: [1.2.3.4]}]\n"),
		[]byte("apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata: {name: cluster.clusterset.k8s.io}\nspec: {value: east}\n"))
	f.Fuzz(func(t *testing.T, east, west []byte) {
		s := mcs.NewStore(mcs.Options{})
		gws := gatewayapi.NewStore()
		// A fixed member order keeps coverage deterministic, which the
		// fuzzing engine relies on to minimize inputs.
		for i, data := range [][]byte{east, west} {
			member := []string{"east", "west"}[i]
			objs, _ := Decode(member+".yaml", data)
			for _, o := range objs {
				stores := event.StoresOf(o.Obj)
				if stores&event.Gateway != 0 {
					if err := gws.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: o.Obj}); err != nil {
						t.Fatalf("a decoded Gateway API object was refused: %v", err)
					}
				}
				if stores&event.MCS == 0 {
					continue
				}
				if err := s.Apply(event.Event{Member: member, Op: event.OpUpsert, Object: o.Obj}); err != nil {
					t.Fatalf("a decoded object was refused: %v", err)
				}
			}
		}
		s.Flush()
		state := s.State()
		for key, st := range state.Services.All() {
			if st.Import == nil {
				continue
			}
			if len(st.Import.ImportedIn) == 0 || len(st.Import.Clusters) == 0 {
				t.Errorf("%s: import with no importer or exporter: %+v", key, st.Import)
			}
			for _, p := range st.Import.Ports {
				for _, c := range p.Clusters {
					if st.Backend(c) == nil {
						t.Errorf("%s: port %s served by %s, which does not export", key, p.Name, c)
					}
				}
			}
		}
		var buf bytes.Buffer
		for _, id := range state.ClusterIDs() {
			objs := state.ObjectsFor(id, time.Unix(0, 0))
			for _, es := range objs.EndpointSlices {
				if len(es.Endpoints) > mcs.MaxEndpointsPerSlice {
					t.Errorf("slice %s has %d endpoints", es.Name, len(es.Endpoints))
				}
				buf.WriteString(es.Name)
			}
		}
	})
}
