package translate

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/mcs/source"
)

// loadState merges a ClusterSet folder as serve would.
func loadState(t *testing.T, dir string) *mcs.State {
	t.Helper()
	evs, probs, err := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) > 0 {
		t.Fatalf("problems in %s: %v", dir, probs)
	}
	s := mcs.NewStore(mcs.Options{})
	for _, ev := range evs {
		if err := s.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	s.Flush()
	return s.Snapshot()
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
		state := loadState(t, dir)
		for _, c := range state.ClusterIDs() {
			for _, role := range []Role{RoleClient, RoleGateway} {
				v := View{Cluster: c, Role: role}
				t.Run(fmt.Sprintf("%s/%s", name, v), func(t *testing.T) {
					r := All(state, v)
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
}
