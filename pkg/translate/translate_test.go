package translate

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/pkg/gateway"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/mcs/source"
)

// loadState merges a ClusterSet folder as serve would, mesh routes apart.
func loadState(t *testing.T, dir string) (*mcs.State, *gateway.Routes) {
	t.Helper()
	evs, probs, err := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) > 0 {
		t.Fatalf("problems in %s: %v", dir, probs)
	}
	s := mcs.NewStore(mcs.Options{})
	routes := gateway.NewRoutes()
	for _, ev := range evs {
		if ev.Object != nil && gateway.Handles(ev.Object) {
			if _, errs := routes.Apply(ev); len(errs) > 0 {
				t.Logf("route: %v", errs)
			}
			continue
		}
		if err := s.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	s.Flush()
	return s.Snapshot(), routes
}

// TestTranslateGolden translates every testdata/<case>.in ClusterSet folder
// (and the shipped demo) for every view (member cluster x role) and
// compares the Envoy resources with <case>.<cluster>.<role>.out.yaml.
// Every returned resource has passed Validate; any invalid one fails the
// test, since these inputs are all well-formed.
func TestTranslateGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*.in")
	cases := map[string]string{"examples-clusterset": "../../examples/clusterset"}
	for _, d := range dirs {
		cases[strings.TrimSuffix(filepath.Base(d), ".in")] = d
	}
	for name, dir := range cases {
		state, routes := loadState(t, dir)
		for _, c := range state.ClusterIDs() {
			for _, role := range []Role{RoleClient, RoleGateway} {
				v := View{Cluster: c, Role: role}
				t.Run(fmt.Sprintf("%s/%s", name, v), func(t *testing.T) {
					r := AllWith(state, v, func(st *mcs.ServiceState) ServiceOptions {
						if st == nil || v.Role != RoleClient || len(routes.For(string(v.Cluster), st.Key, 9000)) == 0 {
							return ServiceOptions{}
						}
						return ServiceOptions{
							Routes: func(port int32) []gateway.MeshRoute { return routes.For(string(v.Cluster), st.Key, port) },
							Ports:  func(mcs.ServiceKey) []int32 { return []int32{9000} },
						}
					})
					for _, inv := range r.Invalid {
						t.Errorf("invalid: %v", inv)
					}
					out, err := YAML(r.Resources)
					if err != nil {
						t.Fatal(err)
					}
					golden.Check(t, filepath.Join("testdata", fmt.Sprintf("%s.%s.%s.out.yaml", name, c, role)), out)
				})
			}
		}
	}
	golden.NoOrphans(t, "testdata/*.out.yaml")
}
