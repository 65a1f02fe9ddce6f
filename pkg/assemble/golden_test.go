package assemble_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/translate"
)

// step is one change to a ClusterSet folder: files written (path ->
// content) and deleted.
type step struct {
	Write  map[string]string `json:"write"`
	Delete []string          `json:"delete"`
}

// TestPlansGolden applies testdata/<case>.steps.yaml one step at a time
// to one assembler and writes what each Plan updates, in the order the
// cache gets it, to <case>.out.yaml; after every step the incremental
// views must equal a fresh build of the folder as it is then.
func TestPlansGolden(t *testing.T) {
	cases := testkit.Cases(t, "testdata/*.steps.yaml")
	for _, in := range cases {
		name := strings.TrimSuffix(filepath.Base(in), ".steps.yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var steps []step
			if err := yaml.UnmarshalStrict(raw, &steps); err != nil {
				t.Fatal(err)
			}
			f := newFolder(t)
			var out bytes.Buffer
			for i, s := range steps {
				for _, p := range slices.Sorted(mapsKeys(s.Write)) {
					path := filepath.Join(f.dir, p)
					if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(s.Write[p]), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				for _, p := range s.Delete {
					if err := os.Remove(filepath.Join(f.dir, p)); err != nil {
						t.Fatal(err)
					}
				}
				plan := f.step()
				fmt.Fprintf(&out, "# step %d: %d translated\n", i+1, plan.Translated)
				if plan.Views != nil {
					fmt.Fprintf(&out, "views: [%s]\n", strings.Join(plan.Views, ", "))
				}
				for _, u := range plan.Updates {
					var names []string
					for _, r := range u.Set {
						names = append(names, r.Name)
					}
					op, list := "set", names
					if len(u.Delete) > 0 {
						op, list = "delete", u.Delete
					}
					fmt.Fprintf(&out, "- %s %s %s: [%s]\n", u.View, translate.TypeName(u.Type), op, strings.Join(list, ", "))
				}
				if d := same(f.asm, fromScratch(t, f.dir)); d != "" {
					t.Fatalf("step %d: %s", i+1, d)
				}
			}
			golden.Check(t, filepath.Join("testdata", name+".out.yaml"), out.Bytes())
		})
	}
	golden.NoOrphans(t, "testdata/*.out.yaml")
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
