package translate_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/source"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/pkg/writeback"
)

// load runs a ClusterSet folder through the pipeline serve runs (sources'
// decoding, MCS merge, Gateway API build), without clients.
func load(t *testing.T, dir string) (*assemble.Assembler, *mcs.State) {
	t.Helper()
	evs, probs, err := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) > 0 {
		t.Fatalf("problems in %s: %v", dir, probs)
	}
	off := assemble.New(assemble.Options{KeepViews: true})
	for _, ev := range evs {
		if err := off.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	st := off.Flush().State
	// <dir>/views names the zone views clients ask for, one per line.
	if raw, err := os.ReadFile(filepath.Join(dir, "views")); err == nil {
		for _, name := range strings.Fields(string(raw)) {
			if made, err := off.WantView(name); !made || err != nil {
				t.Fatalf("view %s not made: %v", name, err)
			}
		}
		st = off.Flush().State
	}
	return off, st
}

// TestTranslateGolden translates every ../../testdata/<case>.in ClusterSet folder
// (and the shipped demo) for every view (member cluster x role, and every
// Gateway API Gateway eastwest programs) and compares the Envoy resources
// with <case>.<view, slashes as dots>.out.yaml; the Gateway API statuses
// of each member go to <case>.<cluster>.status.out.yaml. Every returned
// resource has passed Validate; an invalid one fails the test, since the
// translator must never make what it cannot publish.
func TestTranslateGolden(t *testing.T) {
	dirs := testkit.Cases(t, "../../testdata/*.in")
	cases := map[string]string{"examples-clusterset": "../../examples/clusterset"}
	for _, d := range dirs {
		cases[strings.TrimSuffix(filepath.Base(d), ".in")] = d
	}
	for name, dir := range cases {
		off, state := load(t, dir)
		for _, v := range off.Views() {
			t.Run(fmt.Sprintf("%s/%s", name, v), func(t *testing.T) {
				r := off.View(v)
				for _, inv := range r.Invalid {
					t.Errorf("invalid: %v", inv)
				}
				out, err := translate.YAML(r.Resources)
				if err != nil {
					t.Fatal(err)
				}
				golden.Check(t, filepath.Join("testdata", fmt.Sprintf("%s.%s.out.yaml", name, strings.ReplaceAll(v.String(), "/", "."))), out)
			})
		}
		for _, c := range state.Clusters {
			objs := writeback.StatusObjects(off.Statuses(c.Member), time.Unix(0, 0).UTC())
			if len(objs) == 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s/status", name, c.ID), func(t *testing.T) {
				var b bytes.Buffer
				for _, o := range objs {
					y, err := yaml.Marshal(o)
					if err != nil {
						t.Fatal(err)
					}
					b.WriteString("---\n")
					b.Write(y)
				}
				golden.Check(t, filepath.Join("testdata", fmt.Sprintf("%s.%s.status.out.yaml", name, c.ID)), b.Bytes())
			})
		}
	}
	golden.NoOrphans(t, "testdata/*.out.yaml")
}

// Explain's placements of a zone view say which part of each member a
// locality holds (testdata/tiers.in, service near, use1's gateway in
// us-east-1a): use1's endpoints for the zone at priority 0, its others at
// 1, use2's for the zone at 2, then use2's others and euw1, behind its
// gateways, at 3.
func TestPlacementsOfAZoneView(t *testing.T) {
	off, state := load(t, "../../testdata/tiers.in")
	var v translate.View
	for _, x := range off.Views() {
		if x.String() == "use1/gateway@us-east-1a" {
			v = x
		}
	}
	if v.Zone == "" {
		t.Fatalf("no zone view among %v", off.Views())
	}
	st := state.Services.Get(mcs.ServiceKey{Namespace: "shop", Name: "near"})
	var got []string
	for _, p := range translate.Placements(st, v)["near.shop.svc.clusterset.local:80"] {
		got = append(got, fmt.Sprintf("%d %s: %s", p.Priority, p.Member, p.Tier))
	}
	want := []string{
		"0 use1: this member, its endpoints for zone us-east-1a (trafficDistribution: the client's zone first)",
		"1 use1: this member, its endpoints for other zones than us-east-1a (trafficDistribution: after the client's zone)",
		"2 use2: other members, its endpoints for zone us-east-1a (trafficDistribution: the client's zone first)",
		"3 euw1: other members, behind its gateways, zones not known (trafficDistribution: after endpoints of the client's zone us-east-1a)",
		"3 use2: other members, its endpoints for other zones than us-east-1a (trafficDistribution: after the client's zone)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("placements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
