package gatewayapi_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/internal/golden"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/assemble"
	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/source"
)

// TestBuildGolden is a stage golden of gatewayapi.Build, one behaviour per
// case: testdata/<case>.in.yaml is one member's objects (member east),
// read as the folder source reads them and built through the Assembler
// as serve builds them; testdata/<case>.out.yaml is what Build made of
// them (the Gateways as their Envoys serve them, the mesh routes, the
// services it read) and the statuses it owns. The large status goldens of
// pkg/translate cover the same code end to end; these say which rule a
// change moved.
func TestBuildGolden(t *testing.T) {
	for _, in := range testkit.Cases(t, filepath.Join("testdata", "*.in.yaml")) {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "east"), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "east", "objects.yaml"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			src := source.NewDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
			evs, probs, err := src.Scan()
			if err != nil || len(probs) > 0 {
				t.Fatalf("%s does not read: %v %v", in, probs, err)
			}
			asm := assemble.New(assemble.Options{})
			for _, ev := range evs {
				if err := asm.Apply(ev); err != nil {
					t.Fatal(err)
				}
			}
			asm.Flush()
			out, err := yaml.Marshal(render(asm.Gateways()["east"]))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", name+".out.yaml"), out)
		})
	}
	golden.NoOrphans(t, filepath.Join("testdata", "*.out.yaml"))
}

// rendered is a Result with its map keys as strings, and its Gateways'
// certificates as the Secrets' names only (never key material).
type rendered struct {
	Gateways  []renderedGateway                  `json:"gateways,omitempty"`
	Mesh      map[string][]*gatewayapi.MeshRoute `json:"mesh,omitempty"`
	Refs      []string                           `json:"refs,omitempty"`
	RouteRefs map[string][]string                `json:"routeRefs,omitempty"`
	Statuses  []gatewayapi.Status                `json:"statuses,omitempty"`
	// Provision are the Gateways deployed, with what their parameters
	// resolved to.
	Provision []renderedProvision `json:"provision,omitempty"`
}

type renderedProvision struct {
	Gateway  string `json:"gateway"`
	Class    string `json:"class"`
	Image    string `json:"image"`
	Replicas int32  `json:"replicas"`
	Service  string `json:"service"`
	XDS      string `json:"xds"`
	Keep     bool   `json:"keep,omitempty"`
}

type renderedGateway struct {
	Key     string             `json:"key"`
	Ports   []*gatewayapi.Port `json:"ports"`
	Secrets []string           `json:"secrets,omitempty"`
}

func render(r gatewayapi.Result) rendered {
	out := rendered{Statuses: r.Statuses}
	for _, p := range r.Provision {
		out.Provision = append(out.Provision, renderedProvision{Gateway: p.Gateway.Namespace + "/" + p.Gateway.Name, Class: p.Class,
			Image: p.Params.Image, Replicas: p.Params.Replicas, Service: string(p.Params.Service.Type), XDS: p.Params.XDS.Address, Keep: p.Keep})
	}
	for _, gw := range r.Gateways {
		g := renderedGateway{Key: gw.Key.String(), Ports: gw.Ports}
		for k := range gw.Secrets {
			g.Secrets = append(g.Secrets, k.String())
		}
		slices.Sort(g.Secrets)
		out.Gateways = append(out.Gateways, g)
	}
	for k, m := range r.Mesh {
		if out.Mesh == nil {
			out.Mesh = map[string][]*gatewayapi.MeshRoute{}
		}
		out.Mesh[k.String()] = m
	}
	for k := range r.Refs {
		out.Refs = append(out.Refs, k.String())
	}
	slices.Sort(out.Refs)
	for k, keys := range r.RouteRefs {
		if out.RouteRefs == nil {
			out.RouteRefs = map[string][]string{}
		}
		for _, s := range keys {
			out.RouteRefs[k.String()] = append(out.RouteRefs[k.String()], s.String())
		}
	}
	return out
}
